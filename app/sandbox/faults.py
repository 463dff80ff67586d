"""Fault injection: latency, 429/500/503/504, an HTML 500 page, a truncated body, dropped
connections, hangs and holds, each optionally scoped to a path pattern or a mailbox, by seeded
rate (deterministic) or for the next N calls."""

from __future__ import annotations

import random
import re
import threading
import uuid
from dataclasses import dataclass, field
from typing import Literal

FaultKind = Literal[
    "latency", "429", "500", "503", "504", "html500", "truncated", "drop", "timeout", "hold"
]
# The outermost ASGI layer answers these itself (a 500 in the service's shape, a proxy's HTML
# page, a cut body), before any mailbox is known: they are scoped by path only.
RESPONSE_FAULTS: frozenset[str] = frozenset({"500", "html500", "truncated"})
FAILURES: frozenset[str] = frozenset({"429", "503", "504", "drop", "timeout"} | RESPONSE_FAULTS)


class Gate:
    """Holds matching requests inside the mailbox's concurrency slot until released."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def release(self) -> None:
        self._event.set()

    def wait(self, timeout: float) -> bool:
        return self._event.wait(timeout)

    @property
    def released(self) -> bool:
        return self._event.is_set()


@dataclass
class FaultRule:
    kind: FaultKind
    rate: float = 1.0
    remaining: int | None = None  # next-N: the rule retires after firing this many times
    path: str | None = None  # regex searched in the request path
    mailbox: str | None = None  # user id or userPrincipalName
    seconds: float = 0.0  # latency, or the longest a "timeout" hangs
    retry_after: str | None = None  # Retry-After header value for 429/503/504
    id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    gate: Gate | None = None
    fired: int = 0

    def matches(self, path: str, mailbox_keys: tuple[str, ...]) -> bool:
        if self.path is not None and re.search(self.path, path) is None:
            return False
        if self.mailbox is None:
            return not mailbox_keys
        return self.mailbox.casefold() in mailbox_keys


class Faults:
    """The active rules. `pick` is called twice per request: once with no mailbox (every path,
    before authentication) and once with the resolved mailbox (mailbox-scoped rules only)."""

    def __init__(self, seed: int | None = None) -> None:
        self._rules: list[FaultRule] = []
        self._rng = random.Random(seed)
        self._lock = threading.Lock()

    def seed(self, seed: int) -> None:
        with self._lock:
            self._rng = random.Random(seed)

    def add(
        self,
        kind: FaultKind,
        *,
        rate: float = 1.0,
        count: int | None = None,
        path: str | None = None,
        mailbox: str | None = None,
        seconds: float = 0.0,
        retry_after: str | None = None,
    ) -> FaultRule:
        if not 0.0 <= rate <= 1.0:
            raise ValueError("rate is a probability between 0 and 1")
        if kind in RESPONSE_FAULTS and mailbox is not None:
            raise ValueError(f"a {kind} fault is scoped by path, not by mailbox")
        if kind == "timeout" and seconds <= 0:
            seconds = 60.0
        rule = FaultRule(
            kind=kind,
            rate=rate,
            remaining=count,
            path=path,
            mailbox=mailbox,
            seconds=seconds,
            retry_after=retry_after,
            gate=Gate() if kind == "hold" else None,
        )
        with self._lock:
            self._rules.append(rule)
        return rule

    def hold(self, *, mailbox: str | None = None, path: str | None = None) -> Gate:
        """Park matching requests (inside their concurrency slot) until `gate.release()`."""
        rule = self.add("hold", mailbox=mailbox, path=path)
        assert rule.gate is not None
        return rule.gate

    def remove(self, rule_id: str) -> None:
        with self._lock:
            self._rules = [r for r in self._rules if r.id != rule_id]

    def clear(self) -> None:
        with self._lock:
            for rule in self._rules:
                if rule.gate is not None:
                    rule.gate.release()
            self._rules.clear()

    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def pick(self, path: str, mailbox_keys: tuple[str, ...] = ()) -> list[FaultRule]:
        """Rules firing for this request: every latency/hold that matches, then at most one
        failure. Rate draws happen in rule order, so a seed gives the same sequence each run."""
        fired: list[FaultRule] = []
        failed = False
        with self._lock:
            for rule in list(self._rules):
                if not rule.matches(path, mailbox_keys):
                    continue
                if rule.kind in FAILURES and failed:
                    continue
                if rule.kind == "hold" and rule.gate is not None and rule.gate.released:
                    continue
                if rule.rate < 1.0 and self._rng.random() >= rule.rate:
                    continue
                fired.append(rule)
                rule.fired += 1
                failed = failed or rule.kind in FAILURES
                if rule.remaining is not None:
                    rule.remaining -= 1
                    if rule.remaining <= 0:
                        self._rules.remove(rule)
        return fired
