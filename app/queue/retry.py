"""The retry decision: how a job whose handler raised ends, decided here from the exception alone.

The queue imports no other package, so it reads any exception by duck typing:
- `permanent` is True: the job fails at once (`failed`), whatever its attempts;
- otherwise, after the job's last attempt: `dead`;
- `retry_after`: seconds from now (or an aware datetime): the job runs again exactly then, and
  with `throttles_mailbox` True no job of its mailbox is claimed before then either;
- anything else: exponential backoff with jitter.
A missing attribute counts as absent (False, None). `RetryAfter` and `PermanentError`
(app/queue/errors.py) and Graph's errors (app/graph/errors.py) carry these attributes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from sqlalchemy.exc import InterfaceError, OperationalError

from app.config import WorkerSettings
from app.queue.errors import JobError

Outcome = Literal["retry", "failed", "dead"]


@dataclass(frozen=True, slots=True)
class Decision:
    """How a failed run ends: `retry` at `run_at` (holding the job's mailbox until
    `throttle_until` when set), or `failed` or `dead` for good."""

    outcome: Outcome
    run_at: datetime | None = None
    throttle_until: datetime | None = None


@dataclass(frozen=True)
class RetryStrategy:
    """Exponential backoff, capped, with "equal jitter", and the decision that applies it.

    Attempt n waits `min(max, base * 2**(n-1))` scaled by a random factor in [0.5, 1]: half the
    delay is guaranteed (a failing dependency gets its rest), the other half spreads the retries
    of jobs that failed together so they do not return as one burst.
    """

    base_seconds: float = 2.0
    max_seconds: float = 3600.0
    random: Callable[[], float] = field(default=random.random, compare=False)

    @classmethod
    def from_settings(cls, settings: WorkerSettings) -> RetryStrategy:
        return cls(
            base_seconds=settings.backoff_base_seconds, max_seconds=settings.backoff_max_seconds
        )

    def bounds(self, attempt: int) -> tuple[float, float]:
        """The shortest and longest delay after failed attempt number `attempt` (1-based)."""
        exponent = min(max(attempt, 1) - 1, 62)  # 2**62 s is beyond any cap; avoids overflow
        ceiling = min(self.max_seconds, self.base_seconds * 2.0**exponent)
        return ceiling / 2, ceiling

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt number `attempt`."""
        low, high = self.bounds(attempt)
        return low + (high - low) * self.random()

    def next_run_at(self, attempt: int, now: datetime) -> datetime:
        return now + timedelta(seconds=self.delay(attempt))

    def decide(
        self, error: BaseException, *, attempt: int, max_attempts: int, now: datetime
    ) -> Decision:
        """How the run that raised `error` on attempt `attempt` (1-based) ends, at `now`."""
        if getattr(error, "permanent", False) is True:
            return Decision("failed")
        if attempt >= max_attempts:
            return Decision("dead")
        run_at = _retry_at(getattr(error, "retry_after", None), now)
        if run_at is None:
            return Decision("retry", run_at=self.next_run_at(attempt, now))
        throttle = getattr(error, "throttles_mailbox", False) is True
        return Decision("retry", run_at=run_at, throttle_until=run_at if throttle else None)


def _retry_at(retry_after: object, now: datetime) -> datetime | None:
    """The exact time a `retry_after` value names, or None when it names none."""
    if isinstance(retry_after, datetime):
        return retry_after
    if isinstance(retry_after, int | float) and not isinstance(retry_after, bool):
        return now + timedelta(seconds=max(0.0, float(retry_after)))
    return None


# Outages of the database or the network, which a later attempt can outlive.
OUTAGES = (OperationalError, InterfaceError, OSError)


def steers_retry(error: BaseException) -> bool:
    """Whether the error says how its job goes on: the queue's own, any that carries `permanent`
    (Graph's, bookingtime's), or an outage. Anything else is a bug or an input calbridge cannot
    handle, and retrying would only repeat it."""
    return isinstance(error, (JobError, *OUTAGES)) or hasattr(error, "permanent")
