"""Outlook's per app + mailbox limits: concurrent requests in flight, and requests per sliding
window measured on the sandbox clock (graph-protocol.md §4)."""

from __future__ import annotations

import math
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.sandbox.errors import GraphError

Key = tuple[str, str]  # (client_id, user_id)
CONCURRENCY_RETRY_AFTER = "1"  # whole seconds: kiota's RetryHandler ignores fractional values


@dataclass
class ThrottleLimits:
    concurrency: int = 4
    requests_per_window: int = 10_000
    window: timedelta = field(default_factory=lambda: timedelta(minutes=10))


class Throttle:
    def __init__(self, limits: ThrottleLimits | None = None) -> None:
        self.limits = limits or ThrottleLimits()
        self._in_flight: dict[Key, int] = {}
        self._hits: dict[Key, deque[datetime]] = {}
        self._changed = threading.Condition()
        self.rejected = 0

    def enter(self, key: Key, now: datetime) -> Callable[[], None]:
        """Admit a request or raise Graph's 429; the returned callable ends the request."""
        with self._changed:
            if self._in_flight.get(key, 0) >= self.limits.concurrency:
                self.rejected += 1
                # Graph's throttling guide lists Calendar among the resources that send
                # Retry-After; a slot frees as soon as one request ends, so 1 s (what Graph has
                # been seen to send on 429s) is enough.
                raise GraphError(
                    429,
                    "ApplicationThrottled",
                    "Application is over its MailboxConcurrency limit.",
                    headers={"Retry-After": CONCURRENCY_RETRY_AFTER},
                )
            hits = self._hits.setdefault(key, deque())
            while hits and hits[0] <= now - self.limits.window:
                hits.popleft()
            if len(hits) >= self.limits.requests_per_window:
                self.rejected += 1
                wait = (hits[0] + self.limits.window - now).total_seconds()
                raise GraphError(
                    429,
                    "TooManyRequests",
                    "Please retry again later.",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                    inner={"code": "429", "message": "Please retry after", "status": "429"},
                )
            # Rejected requests are not counted, so a client that waits Retry-After gets in.
            hits.append(now)
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            self._changed.notify_all()

        def release() -> None:
            with self._changed:
                self._in_flight[key] -= 1
                self._changed.notify_all()

        return release

    def in_flight(self, user_id: str) -> int:
        with self._changed:
            return sum(n for (_, uid), n in self._in_flight.items() if uid == user_id)

    def wait_in_flight(self, user_id: str, count: int, timeout: float = 10.0) -> bool:
        """Block until `count` requests to the mailbox are in flight (for tests, in a thread)."""
        with self._changed:
            return self._changed.wait_for(lambda: self.in_flight(user_id) >= count, timeout)
