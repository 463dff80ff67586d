"""The write log: every create, update and delete of an event, with the server time it became
visible and the identities a client tags its events with (transactionId, single-value extended
properties). Benchmarks read it instead of polling mailboxes; Graph itself has no such thing, so
it is served under the control API only."""

from __future__ import annotations

import itertools
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from app.sandbox.state import Change, ChangeType, SandboxState

# Enough for hours of a benchmark at Outlook's limits; older entries are dropped (and counted)
# so a long-running `calbridge sandbox` does not grow without end.
DEFAULT_CAPACITY = 500_000


@dataclass(frozen=True)
class Write:
    sequence: int
    change_type: ChangeType
    user_id: str
    event_id: str  # immutable id
    transaction_id: str | None
    extended: dict[str, str]  # single-value extended properties, by property id
    start: datetime | None  # UTC instant after the write (None for deletes)
    end: datetime | None
    at: datetime  # sandbox clock
    # time.monotonic() of this host when the change was committed: comparable with the
    # monotonic clock of any other process on the same host, unlike the (movable) sandbox clock.
    monotonic: float

    def as_json(self) -> dict[str, Any]:
        return {
            "sequence": self.sequence,
            "change_type": self.change_type,
            "user_id": self.user_id,
            "event_id": self.event_id,
            "transaction_id": self.transaction_id,
            "extended": self.extended,
            "start": _iso(self.start),
            "end": _iso(self.end),
            "at": self.at.isoformat(),
            "monotonic": self.monotonic,
        }


def _iso(moment: datetime | None) -> str | None:
    return None if moment is None else moment.astimezone(UTC).isoformat()


@dataclass(frozen=True)
class WritePage:
    writes: list[Write]
    last_sequence: int  # of the newest write logged so far (0: none yet)
    dropped: int  # writes evicted because the log was full


class WriteLog:
    """Fed by `SandboxState.on_change`, so it sees exactly what the change log (delta,
    subscriptions) sees, including edits made through the control API as a person in Outlook."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self._writes: deque[Write] = deque(maxlen=capacity)
        # Identities of live events, so a delete (the event is gone by the time the change is
        # logged) still says which transactionId and tags it removed.
        self._identities: dict[tuple[str, str], tuple[str | None, dict[str, str]]] = {}
        self._lock = threading.Lock()
        self._sequence = 0
        self._dropped = 0
        self._state: SandboxState | None = None

    def attach(self, state: SandboxState) -> None:
        self._state = state
        state.on_change.append(self._on_change)

    def _on_change(self, change: Change) -> None:
        # Called under the state lock, right after the mailbox changed; must not raise.
        assert self._state is not None
        key = (change.user_id, change.event_id)
        start = end = None
        if change.change_type == "deleted":
            transaction_id, extended = self._identities.pop(key, (None, {}))
        else:
            mailbox = self._state.mailboxes.get(change.user_id)
            event = mailbox.events.get(change.event_id) if mailbox is not None else None
            if event is None:
                transaction_id, extended = self._identities.get(key, (None, {}))
            else:
                transaction_id, extended = event.transaction_id, dict(event.extended)
                self._identities[key] = (transaction_id, extended)
                start = event.start[0] if event.start is not None else None
                end = event.end[0] if event.end is not None else None
        monotonic = time.monotonic()
        with self._lock:
            self._sequence += 1
            if len(self._writes) == self._writes.maxlen:
                self._dropped += 1
            self._writes.append(
                Write(
                    sequence=self._sequence,
                    change_type=change.change_type,
                    user_id=change.user_id,
                    event_id=change.event_id,
                    transaction_id=transaction_id,
                    extended=extended,
                    start=start,
                    end=end,
                    at=change.at,
                    monotonic=monotonic,
                )
            )

    def page(self, *, after: int = 0, limit: int | None = None) -> WritePage:
        """Writes with a sequence above `after`, oldest first (at most `limit`)."""
        with self._lock:
            first = self._writes[0].sequence if self._writes else self._sequence + 1
            skip = max(0, after + 1 - first)
            stop = None if limit is None else skip + limit
            items = list(itertools.islice(self._writes, skip, stop))
            return WritePage(items, self._sequence, self._dropped)

    def clear(self) -> None:
        """Forget the logged writes; sequence numbers keep counting up."""
        with self._lock:
            self._writes.clear()
