"""The job registry (kind → handler, optional period) and the context a handler receives.

The queue knows job kinds only through a registry; `app/tasks.py` builds the app's one.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from app.config import Settings
from app.db import Database

_KIND = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)+$")


@dataclass(frozen=True)
class JobContext:
    """What a running job knows about itself and the shared clients it may use."""

    job_id: int
    kind: str
    args: dict[str, Any]
    attempt: int  # 1 on the first run
    max_attempts: int
    mailbox: str | None
    serial_key: str | None
    dedupe_key: str | None
    database: Database
    settings: Settings
    worker_id: str
    clock: Callable[[], datetime] = field(repr=False)

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts


Handler = Callable[[JobContext], Awaitable[None]]


@dataclass(frozen=True)
class JobKind:
    """One registered kind: its handler and, for a periodic job, its interval in seconds."""

    kind: str
    handler: Handler
    every_seconds: float | None = None


class JobRegistry:
    """Maps job kinds (dotted names such as `sync.appointment`) to their handlers."""

    def __init__(self) -> None:
        self._kinds: dict[str, JobKind] = {}

    def register(self, kind: str, handler: Handler, *, every_seconds: float | None = None) -> None:
        """Add a kind; with `every_seconds` the queue runs it once per tick of that interval."""
        if not _KIND.match(kind):
            raise ValueError(f"job kind {kind!r} must be a dotted lower-case name")
        if kind in self._kinds:
            raise ValueError(f"job kind {kind!r} is already registered")
        # Ticks are keyed by whole epoch seconds, so shorter intervals would share keys.
        if every_seconds is not None and every_seconds < 1:
            raise ValueError("a periodic job needs an interval of at least 1 second")
        self._kinds[kind] = JobKind(kind, handler, every_seconds)

    def job(self, kind: str, *, every_seconds: float | None = None) -> Callable[[Handler], Handler]:
        """Decorator form of `register`."""

        def decorate(handler: Handler) -> Handler:
            self.register(kind, handler, every_seconds=every_seconds)
            return handler

        return decorate

    def get(self, kind: str) -> JobKind | None:
        return self._kinds.get(kind)

    def __contains__(self, kind: object) -> bool:
        return kind in self._kinds

    def __iter__(self) -> Iterator[JobKind]:
        return iter(self._kinds.values())

    def __len__(self) -> int:
        return len(self._kinds)

    @property
    def kinds(self) -> list[str]:
        return sorted(self._kinds)

    @property
    def periodic(self) -> list[JobKind]:
        return [k for k in self._kinds.values() if k.every_seconds is not None]
