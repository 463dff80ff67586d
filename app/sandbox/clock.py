"""The sandbox's clock: real time plus an offset tests move forward, so expiry never needs sleep."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta


class Clock:
    """Every timestamp, expiry, token lifetime and throttling window in the sandbox reads this."""

    def __init__(self) -> None:
        self._offset = timedelta()
        self._frozen_at: datetime | None = None
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            base = self._frozen_at if self._frozen_at is not None else datetime.now(UTC)
            return base + self._offset

    def advance(self, delta: timedelta) -> datetime:
        """Move time forward (never back: expiries already handed out must stay monotonic)."""
        if delta < timedelta():
            raise ValueError("the sandbox clock only moves forward")
        with self._lock:
            self._offset += delta
        return self.now()

    def freeze(self) -> datetime:
        """Stop real time from moving, so tests can compare exact timestamps."""
        with self._lock:
            if self._frozen_at is None:
                self._frozen_at = datetime.now(UTC)
        return self.now()
