"""Change detection for polled appointment windows, which bookingtime cannot filter by
"changed since": fingerprints per appointment, a hash per window, the diff between two polls and
the verdict on an appointment that vanished from its window. Pure: no I/O, no database.

A fingerprint covers exactly what calbridge writes to Outlook: start, end, timeZone, canceled,
moved, the booking-resource ids, name, notes, customer and address. Start and end are compared as
instants (normalised to UTC when they parse, else kept as text), so the same time written with
another offset is no change; a missing field and null are the same, and so are a missing flag and
false, and the `[]` PHP sends for an empty customer or address and null.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from app.bookingtime_api.values import parse_timestamp

VanishedOutcome = Literal["deleted", "canceled", "moved_out", "still_inside"]

_TIMESTAMPS = ("start", "end")
_FLAGS = ("canceled", "moved")
_TEXTS = ("timeZone", "name", "notes")
_OBJECTS = ("customer", "address")


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _digest(value: Any) -> str:
    return hashlib.sha256(_canonical(value).encode()).hexdigest()[:32]


def _instant(value: Any) -> Any:
    try:
        return parse_timestamp(value).astimezone(UTC).isoformat()
    except ValueError:
        return value


def _resource_ids(value: Any) -> list[Any]:
    if not isinstance(value, list):
        return [] if value is None else [value]
    ids = [item.get("id") if isinstance(item, Mapping) else item for item in value]
    # Sorted by their JSON text, which orders ids of any type without comparing str with None.
    return sorted(ids, key=_canonical)


def fingerprint(appointment: Mapping[str, Any]) -> str:
    """A stable hash of the fields of a raw APPOINTMENT that calbridge writes to Outlook."""
    fields: dict[str, Any] = {name: _instant(appointment.get(name)) for name in _TIMESTAMPS}
    for name in _FLAGS:
        flag = appointment.get(name)
        fields[name] = False if flag is None else flag
    for name in _TEXTS:
        fields[name] = appointment.get(name)
    for name in _OBJECTS:
        value = appointment.get(name)
        fields[name] = None if value == [] else value
    fields["bookingResourceIds"] = _resource_ids(appointment.get("bookingResourceList"))
    return _digest(fields)


def fingerprints(appointments: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Each raw appointment's fingerprint by its id: what `diff` compares between polls."""
    return {str(appointment.get("id")): fingerprint(appointment) for appointment in appointments}


def window_hash(appointments: Iterable[Mapping[str, Any]]) -> str:
    """A hash of a window's (id, fingerprint) pairs, whatever order the list came in."""
    pairs = sorted(
        (_canonical(appointment.get("id")), fingerprint(appointment))
        for appointment in appointments
    )
    return _digest(pairs)


@dataclass(frozen=True, slots=True)
class WindowChanges:
    """How a window's fingerprints by id differ from the previous poll's; ids sorted."""

    new: tuple[str, ...]
    changed: tuple[str, ...]
    vanished: tuple[str, ...]
    unchanged: int

    @property
    def nothing_changed(self) -> bool:
        return not (self.new or self.changed or self.vanished)


def diff(previous: Mapping[str, str], current: Mapping[str, str]) -> WindowChanges:
    """New, changed and vanished ids between two polls of one window (a listed cancellation is
    a change: the fingerprint covers `canceled`)."""
    both = previous.keys() & current.keys()
    changed = sorted(id_ for id_ in both if previous[id_] != current[id_])
    return WindowChanges(
        new=tuple(sorted(current.keys() - previous.keys())),
        changed=tuple(changed),
        vanished=tuple(sorted(previous.keys() - current.keys())),
        unchanged=len(both) - len(changed),
    )


def classify_vanished(
    shown: Mapping[str, Any] | None, window_start: datetime, window_end: datetime
) -> VanishedOutcome:
    """What `appointment/{id}/show` says of an id gone from a window it was in: None (a 404)
    is a deletion; else canceled, moved out of [window_start, window_end), or still inside
    (the list missed it, so nothing is cancelled). ValueError for naive bounds or times."""
    if window_start.tzinfo is None or window_end.tzinfo is None:
        raise ValueError("the window's start and end must be timezone-aware")
    if shown is None:
        return "deleted"
    if shown.get("canceled") is True:
        return "canceled"
    start = parse_timestamp(shown.get("start"))
    end = parse_timestamp(shown.get("end"))
    if start == end:  # an instant is inside where a half-open window holds it
        inside = window_start <= start < window_end
    else:
        inside = start < window_end and end > window_start
    return "still_inside" if inside else "moved_out"
