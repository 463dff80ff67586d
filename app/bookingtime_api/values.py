"""Strict readers for the values in bookingtime's records: ISO-8601 timestamps with an offset,
ids that may go into a URL path. Pure: no I/O.

bookingtime's own SDK mocks carry typos (`23-12-08T11:01:16+01:00`, `2024-01-023…`, `+0:00`).
None of them is guessed at: a value that is not exactly what the contract says is refused, and
the caller names the record and field it came from.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

# YYYY-MM-DDTHH:MM[:SS[.fraction]] and an offset Z, ±HH:MM or ±HHMM: every timestamp bookingtime
# is seen to send. Python's fromisoformat alone would also take dates without a time, naive
# times and the basic format (20240101T…).
_TIMESTAMP = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})[Tt ](?P<time>\d{2}:\d{2}(?::\d{2}(?:[.,]\d{1,6})?)?)"
    r"(?P<offset>[Zz]|[+-]\d{2}:?\d{2})"
)
#: bookingtime ids: a 2-character type prefix and 30 more of [a-zA-Z0-9] (reference §3.3).
_ID = re.compile(r"[A-Za-z0-9]{32}")


def parse_timestamp(value: Any) -> datetime:
    """An aware datetime from bookingtime's ISO-8601 text; ValueError saying why not."""
    if not isinstance(value, str):
        raise ValueError(
            f"expected an ISO-8601 timestamp with an offset, got {type(value).__name__}"
        )
    match = _TIMESTAMP.fullmatch(value.strip())
    if match is None:
        raise ValueError(
            f"{value!r} is not an ISO-8601 timestamp with an offset "
            "(like 2024-01-01T09:00:00+01:00)"
        )
    offset = match["offset"]
    if offset in ("Z", "z"):
        offset = "+00:00"
    elif ":" not in offset:
        offset = f"{offset[:3]}:{offset[3:]}"
    text = f"{match['date']}T{match['time'].replace(',', '.')}{offset}"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:  # month 13, 25 o'clock, offset beyond ±24 h
        raise ValueError(f"{value!r} is not a valid timestamp ({exc})") from None
    return moment


def is_entity_id(value: Any, prefix: str | None = None) -> bool:
    """Whether `value` has the shape of a bookingtime id (with the given type prefix)."""
    return (
        isinstance(value, str)
        and _ID.fullmatch(value) is not None
        and (prefix is None or value.startswith(prefix))
    )


def entity_id(value: str, *, prefix: str, name: str) -> str:
    """`value` if it is a bookingtime id of the given type, else ValueError (before any URL)."""
    if not is_entity_id(value, prefix):
        raise ValueError(f"{name} must be {prefix} and 30 more letters or digits, got {value!r}")
    return value
