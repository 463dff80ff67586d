"""The retry strategy: when a job that failed transiently runs again."""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from app.config import WorkerSettings


@dataclass(frozen=True)
class RetryStrategy:
    """Exponential backoff, capped, with "equal jitter".

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
