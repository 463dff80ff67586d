"""A verified bookingtime delivery's body, parsed: JSON that any database can store, within the
documented limits (`app.bookingtime.schemas`), and an event of the contract for the organisation
in the URL. Pure: no database, no I/O.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import ValidationError

from app.bookingtime.schemas import (
    APPOINTMENT_EVENT_TYPES,
    LONG_TEXT_FIELDS,
    MAX_LIST_ITEMS,
    MAX_STRING_CHARS,
    MAX_TEXT_CHARS,
    MAX_VALUES,
    AppointmentEvent,
    OtherEvent,
)

# bookingtime's objects nest a few levels; a deeper document is refused before anything walks
# or re-serialises it recursively (deep enough, that would be a RecursionError, not a 400).
MAX_NESTING = 32
# Escapes that decode to text no database stores: U+0000 (PostgreSQL text and jsonb refuse it)
# and UTF-16 surrogates (lone ones cannot be encoded). Pairs decode to one character and pass.
_SUSPECT_ESCAPE = re.compile(r"\\u(?:0000|[dD][89a-fA-F])")


class InvalidJson(ValueError):
    """The body is not a JSON object calbridge can store (400 `invalid_json`)."""


class InvalidPayload(ValueError):
    """The JSON object breaks the contract (422 `validation_failed`); `errors` name the fields."""

    def __init__(self, errors: list[dict[str, str]]) -> None:
        self.errors = errors
        fields = ", ".join(dict.fromkeys(error["field"] for error in errors))
        super().__init__(f"invalid or missing: {fields}")


@dataclass(frozen=True, slots=True)
class ParsedEvent:
    """A valid delivery: for an appointment event, `appointment` is the object as received."""

    event_type: str
    event_at: datetime
    appointment_id: str | None
    appointment: dict[str, Any] | None
    canceled: bool


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    # `1e400` is valid JSON syntax but no double: Python would read it as infinity and store
    # `Infinity`, which is not JSON (PostgreSQL's jsonb refuses it).
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text} is out of range")
    return value


# Built once: `json.loads` with any option builds a new decoder on every call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)


def _has_unstorable_text(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value or (not value.isascii() and _is_unencodable(value))
    if isinstance(value, dict):
        return any(_has_unstorable_text(k) or _has_unstorable_text(v) for k, v in value.items())
    if isinstance(value, list):
        return any(_has_unstorable_text(item) for item in value)
    return False


def _nesting(value: Any) -> int:
    depth, level = 0, [(value, 1)]
    while level:
        node, at = level.pop()
        if isinstance(node, dict | list):
            depth = max(depth, at)
            if depth > MAX_NESTING:
                break
            children = node.values() if isinstance(node, dict) else node
            level.extend((child, at + 1) for child in children)
    return depth


# A delivery over the limits is named by its first few offending fields, not all of them.
_MAX_LIMIT_ERRORS = 10


def _within_limits(document: Any) -> bool:
    """Whether the document keeps every limit `_limit_errors` names: the same walk, without
    the field names, for the deliveries that keep them all (nearly every one)."""
    seen = 1
    stack = [document]
    while stack:
        node = stack.pop()
        if isinstance(node, list) and len(node) > MAX_LIST_ITEMS:
            return False
        seen += len(node)
        if seen > MAX_VALUES:
            return False
        pairs = node.items() if isinstance(node, dict) else ((None, item) for item in node)
        for key, value in pairs:
            if key is not None and len(key) > MAX_STRING_CHARS:
                return False
            if isinstance(value, str):
                limit = MAX_TEXT_CHARS if key in LONG_TEXT_FIELDS else MAX_STRING_CHARS
                if len(value) > limit:
                    return False
            elif isinstance(value, list | dict):
                stack.append(value)
    return True


def _limit_errors(document: Any) -> list[dict[str, str]]:
    """The fields over the payload's limits (app.bookingtime.schemas), in document order.

    Iterative and bounded by MAX_VALUES: a document is counted as its containers are opened,
    so no walk here ever visits more values than the limit allows.
    """
    errors: list[dict[str, str]] = []
    seen = 1
    stack: list[tuple[Any, tuple[str, ...]]] = [(document, ())]
    while stack and len(errors) < _MAX_LIMIT_ERRORS:
        node, path = stack.pop()
        if isinstance(node, str):
            limit = MAX_TEXT_CHARS if path and path[-1] in LONG_TEXT_FIELDS else MAX_STRING_CHARS
            if len(node) > limit:
                errors.append(_limit_error(path, f"at most {limit} characters (got {len(node)})"))
            continue
        if not isinstance(node, list | dict):
            continue
        if isinstance(node, list) and len(node) > MAX_LIST_ITEMS:
            message = f"at most {MAX_LIST_ITEMS} entries (got {len(node)})"
            errors.append(_limit_error(path, message))
            continue
        # Counted before the children are listed: a huge object costs nothing more here.
        seen += len(node)
        if seen > MAX_VALUES:
            return [_limit_error((), f"at most {MAX_VALUES} JSON values in all")]
        children: list[tuple[Any, tuple[str, ...]]]
        if isinstance(node, list):
            children = [(item, (*path, str(index))) for index, item in enumerate(node)]
        else:
            if any(len(key) > MAX_STRING_CHARS for key in node):
                message = f"names at most {MAX_STRING_CHARS} characters long"
                errors.append(_limit_error(path, message))
            children = [(value, (*path, key)) for key, value in node.items()]
        stack.extend(reversed(children))
    return errors


def _limit_error(path: tuple[str, ...], message: str) -> dict[str, str]:
    return {"field": ".".join(path) or "body", "message": message}


def _is_unencodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _field_errors(exc: ValidationError, prefix: tuple[str, ...] = ()) -> list[dict[str, str]]:
    return [
        {
            "field": ".".join((*prefix, *(str(part) for part in error["loc"]))) or "body",
            "message": error["msg"],
        }
        for error in exc.errors(include_url=False)
    ]


def parse_event(text: str, *, organization_id: str) -> ParsedEvent:
    """The delivery's event, checked against the contract and the path's organisation."""
    try:
        document = _DECODER.decode(text)
    except (ValueError, RecursionError) as exc:
        raise InvalidJson(f"the body is not valid JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise InvalidJson("the body must be a JSON object")
    # Counting brackets is cheap and bounds the depth, so ordinary payloads skip the walk.
    if text.count("{") + text.count("[") > MAX_NESTING and _nesting(document) > MAX_NESTING:
        raise InvalidJson(f"the JSON is nested more than {MAX_NESTING} levels deep")
    if not _within_limits(document) and (limit_errors := _limit_errors(document)):
        raise InvalidPayload(limit_errors)
    if _SUSPECT_ESCAPE.search(text) and _has_unstorable_text(document):
        raise InvalidJson("JSON strings must not contain U+0000 or unpaired UTF-16 surrogates")

    event_type = document.get("type")
    if isinstance(event_type, str) and event_type in APPOINTMENT_EVENT_TYPES:
        try:
            event = AppointmentEvent.model_validate(document)
        except ValidationError as exc:
            raise InvalidPayload(_field_errors(exc)) from exc
        if event.data.organizationId != organization_id:
            raise _organization_mismatch()
        appointment = event.data.appointment
        if appointment.end < appointment.start:
            raise InvalidPayload(
                [
                    {
                        "field": "data.appointment.end",
                        "message": "must not be before data.appointment.start",
                    }
                ]
            )
        return ParsedEvent(
            event_type=event.type,
            event_at=event.timestamp,
            appointment_id=appointment.id,
            appointment=document["data"]["appointment"],
            # A cancel event cancels even if its appointment object lacks the flag.
            canceled=appointment.canceled is True or event.type == "appointment.canceled",
        )

    try:
        other = OtherEvent.model_validate(document)
    except ValidationError as exc:
        raise InvalidPayload(_field_errors(exc)) from exc
    data = other.data or {}
    if "organizationId" in data and data["organizationId"] != organization_id:
        raise _organization_mismatch()
    subject = data.get("appointment")
    subject_id = subject.get("id") if isinstance(subject, dict) else None
    return ParsedEvent(
        event_type=other.type,
        event_at=other.timestamp,
        appointment_id=subject_id if isinstance(subject_id, str) and subject_id else None,
        appointment=None,
        canceled=False,
    )


def _organization_mismatch() -> InvalidPayload:
    return InvalidPayload(
        [
            {
                "field": "data.organizationId",
                "message": "does not match the organisation in the webhook URL",
            }
        ]
    )
