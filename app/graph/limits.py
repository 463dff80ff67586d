"""In-process per-mailbox limits: at most N concurrent Graph requests per mailbox (Outlook allows 4
per app and mailbox), and no request to a throttled mailbox before its Retry-After has passed.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

Clock = Callable[[], datetime]
Sleep = Callable[[float], Awaitable[None]]

OUTLOOK_MAILBOX_CONCURRENCY = 4


def _utcnow() -> datetime:
    return datetime.now(UTC)


class MailboxLimiter:
    """Shared by every GraphClient of the process; keys are `"{client_id}:{mailbox}"`.

    `clock` and `sleep` are injectable so tests move time instead of sleeping.
    """

    def __init__(
        self,
        *,
        concurrency: int = OUTLOOK_MAILBOX_CONCURRENCY,
        clock: Clock = _utcnow,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.concurrency = concurrency
        self.clock = clock
        self._sleep = sleep
        self._semaphores: dict[str, asyncio.Semaphore] = {}
        self._throttled_until: dict[str, datetime] = {}
        self._in_flight: dict[str, int] = {}

    @asynccontextmanager
    async def slot(self, key: str) -> AsyncIterator[None]:
        """Hold one of the mailbox's request slots, once the mailbox is not throttled."""
        semaphore = self._semaphores.setdefault(key, asyncio.Semaphore(self.concurrency))
        async with semaphore:
            # Checked after acquiring: a throttle may have been set while this call queued.
            while (wait := self.seconds_until_free(key)) > 0:
                await self._sleep(wait)
            self._in_flight[key] = self._in_flight.get(key, 0) + 1
            try:
                yield
            finally:
                self._in_flight[key] -= 1

    def throttle(self, key: str, seconds: float) -> datetime:
        """Hold the mailbox back for `seconds` (never shortens an existing throttle)."""
        until = self.clock() + timedelta(seconds=max(0.0, seconds))
        current = self._throttled_until.get(key)
        if current is None or until > current:
            self._throttled_until[key] = until
            return until
        return current

    def throttled_until(self, key: str) -> datetime | None:
        """When the mailbox may be called again, or None when it is not throttled."""
        until = self._throttled_until.get(key)
        if until is None:
            return None
        if until <= self.clock():
            del self._throttled_until[key]
            return None
        return until

    def seconds_until_free(self, key: str) -> float:
        until = self.throttled_until(key)
        return 0.0 if until is None else (until - self.clock()).total_seconds()

    def in_flight(self, key: str) -> int:
        """Requests currently holding a slot of this mailbox (for metrics and tests)."""
        return self._in_flight.get(key, 0)
