"""Delta state handed out by calendarView/delta (the routes live in delta.py): what a client saw
when its deltaLink was issued, and the fixed answers its nextLinks page through."""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Literal

# Graph: an Outlook token's lifetime "depends on the size of the internal delta token cache".
DEFAULT_CAPACITY = 100


@dataclass(frozen=True)
class ItemRef:
    """One calendarView item: a single event or one occurrence of a series."""

    key: str  # internal identity: immutable id, plus "|date" for an occurrence
    event_id: str  # immutable id of the event or its series master
    rest_id: str
    immutable_id: str
    etag: str
    original_date: date | None = None

    def rendered_id(self, immutable: bool) -> str:
        return self.immutable_id if immutable else self.rest_id


@dataclass(frozen=True)
class Snapshot:
    """What a deltaLink's client holds: the window's items and their etags at `sequence`, the
    length of the change log when the snapshot was taken (under the state lock)."""

    user_id: str
    window: tuple[datetime, datetime]
    sequence: int
    items: dict[str, ItemRef]


@dataclass(frozen=True)
class Entry:
    kind: Literal["item", "removed"]
    ref: ItemRef


@dataclass(frozen=True)
class Answer:
    """One round's result, fixed when the round starts, so every nextLink (and a replay of it)
    pages through the same list; its last page hands out `delta_token`."""

    user_id: str
    window: tuple[datetime, datetime]
    entries: tuple[Entry, ...]
    delta_token: str


@dataclass(frozen=True)
class TokenInfo:
    """What an opaque token says about itself, readable even after the store forgot it."""

    kind: Literal["delta", "skip"]
    handle: str
    window: tuple[datetime, datetime] | None
    offset: int = 0


def _encode(payload: dict[str, Any]) -> str:
    raw = json.dumps(payload, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(kind: Literal["delta", "skip"], token: str) -> TokenInfo | None:
    """None for a garbled token."""
    try:
        padded = token + "=" * (-len(token) % 4)
        payload = json.loads(base64.urlsafe_b64decode(padded.encode()))
        handle = payload["h"]
        window = (datetime.fromisoformat(payload["w"][0]), datetime.fromisoformat(payload["w"][1]))
        offset = int(payload.get("o", 0))
    except (binascii.Error, ValueError, KeyError, TypeError, IndexError):
        return None
    if not isinstance(handle, str) or offset < 0:
        return None
    return TokenInfo(kind, handle, window, offset)


def _window_json(window: tuple[datetime, datetime]) -> list[str]:
    return [window[0].isoformat(), window[1].isoformat()]


def skip_token(answer_handle: str, answer: Answer, offset: int) -> str:
    return _encode({"h": answer_handle, "w": _window_json(answer.window), "o": offset})


class DeltaStore:
    """Snapshots (behind $deltatoken) and answers (behind $skiptoken), per mailbox, with the
    oldest evicted beyond `capacity` so long-unused tokens eventually get 410 as in Graph."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY) -> None:
        self.capacity = capacity
        self._lock = threading.Lock()
        self._snapshots: OrderedDict[str, Snapshot] = OrderedDict()
        self._answers: OrderedDict[str, Answer] = OrderedDict()
        # (source handle, change-log length) -> answer handle: a replay gets the same links.
        self._memo: dict[tuple[str, int], str] = {}

    def add_snapshot(self, snapshot: Snapshot) -> str:
        """Store it; returns its $deltatoken."""
        handle = secrets.token_urlsafe(24)
        with self._lock:
            self._snapshots[handle] = snapshot
            self._evict(self._snapshots, snapshot.user_id)
        return _encode({"h": handle, "w": _window_json(snapshot.window)})

    def snapshot(self, user_id: str, handle: str) -> Snapshot | None:
        with self._lock:
            found = self._snapshots.get(handle)
        return found if found is not None and found.user_id == user_id else None

    def add_answer(self, answer: Answer, memo: tuple[str, int]) -> str:
        handle = secrets.token_urlsafe(24)
        with self._lock:
            self._answers[handle] = answer
            self._memo[memo] = handle
            self._evict(self._answers, answer.user_id)
        return handle

    def memoized(self, user_id: str, memo: tuple[str, int]) -> tuple[str, Answer] | None:
        with self._lock:
            handle = self._memo.get(memo)
            answer = self._answers.get(handle) if handle is not None else None
        if handle is None or answer is None or answer.user_id != user_id:
            return None
        return handle, answer

    def answer(self, user_id: str, handle: str) -> Answer | None:
        with self._lock:
            found = self._answers.get(handle)
        return found if found is not None and found.user_id == user_id else None

    def expire(self, user_id: str) -> int:
        """Control API: forget every token of one mailbox (its next use gets 410). Returns how
        many were dropped."""
        with self._lock:
            snapshots = [h for h, s in self._snapshots.items() if s.user_id == user_id]
            answers = [h for h, a in self._answers.items() if a.user_id == user_id]
            for handle in snapshots:
                del self._snapshots[handle]
            for handle in answers:
                del self._answers[handle]
            dropped = set(answers)
            self._memo = {k: v for k, v in self._memo.items() if v not in dropped}
        return len(snapshots) + len(answers)

    def _evict(self, items: OrderedDict[str, Any], user_id: str) -> None:
        owned = [h for h, item in items.items() if item.user_id == user_id]
        for handle in owned[: max(0, len(owned) - self.capacity)]:
            del items[handle]
        if len(self._memo) > 10 * self.capacity:
            self._memo = {k: v for k, v in self._memo.items() if v in self._answers}
