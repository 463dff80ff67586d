"""bookingtime's answer envelope `{"messageList": [...], "content": ...}` and its three collection
shapes (RANGE_LIST, LIST, PAGINATION_LIST), read strictly. Pure: no I/O.

A 2xx whose body is not JSON (an HTML page, JSON cut short) is a `Transient` failure: a proxy or
a broken connection made it, and the same call may well succeed again. A 2xx that is valid JSON
in another shape is an `UnexpectedResponse`: bookingtime itself answered something else.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from app.bookingtime_api.errors import Transient, UnexpectedResponse, excerpt
from app.bookingtime_api.values import parse_timestamp


@dataclass(frozen=True, slots=True)
class Message:
    type: str
    parameter: str | None
    text: str


@dataclass(frozen=True, slots=True)
class Envelope:
    """A decoded answer: its status, messages and `content` (any JSON)."""

    status: int
    messages: tuple[Message, ...]
    content: Any


@dataclass(frozen=True, slots=True)
class RangeList:
    """`listDay`/`listWeek`/`listMonth`: the range bookingtime computed, in its time zone."""

    range_start: str
    range_end: str
    time_zone: str | None
    items: list[Any]


@dataclass(frozen=True, slots=True)
class RecordList:
    """`list`: the records (up to `recordLimit`, 9999 in the SDK's mocks); `record_total`
    counts them all, so a shortened list shows."""

    record_total: int
    records: list[Any]

    @property
    def truncated(self) -> bool:
        return self.record_total > len(self.records)


@dataclass(frozen=True, slots=True)
class Page:
    """One page of an `index` route (1-based)."""

    page_current: int
    page_total: int
    record_total: int
    records: list[Any] = field(default_factory=list)


def decode_json(status: int, body: bytes, *, organization_id: str | None) -> Any:
    """The body's JSON; anything else (HTML, JSON cut short, not UTF-8) is Transient."""
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise Transient(
            f"bookingtime answered {status} with a body that is not JSON: {excerpt(body)!r}",
            status=status,
            code="not_json",
            organization_id=organization_id,
        ) from None


def envelope_of(status: int, body: bytes, *, organization_id: str | None) -> Envelope:
    """A 2xx body read as the envelope, or the error that says why it is none."""
    document = decode_json(status, body, organization_id=organization_id)
    if not isinstance(document, Mapping) or "content" not in document:
        raise _unexpected(
            status, "an answer without the {messageList, content} envelope", organization_id
        )
    messages = document.get("messageList")
    if messages is None:
        messages = []
    if not isinstance(messages, list):
        raise _unexpected(status, "a messageList that is not a list", organization_id)
    return Envelope(
        status=status,
        messages=tuple(_message(item) for item in messages if isinstance(item, Mapping)),
        content=document["content"],
    )


def _message(item: Mapping[str, Any]) -> Message:
    kind, parameter, text = item.get("type"), item.get("parameter"), item.get("text")
    return Message(
        type=kind if isinstance(kind, str) else "",
        parameter=parameter if isinstance(parameter, str) and parameter else None,
        text=text if isinstance(text, str) else "",
    )


def _unexpected(status: int, what: str, organization_id: str | None) -> UnexpectedResponse:
    return UnexpectedResponse(
        f"bookingtime answered {status} with {what}",
        status=status,
        code="unexpected_shape",
        organization_id=organization_id,
        permanent=True,
    )


def _of_class(envelope: Envelope, expected: str, organization_id: str | None) -> Mapping[str, Any]:
    content = envelope.content
    if not isinstance(content, Mapping):
        kind = type(content).__name__
        raise _unexpected(
            envelope.status, f"content of type {kind}, not {expected}", organization_id
        )
    if content.get("class") != expected:
        raise _unexpected(
            envelope.status,
            f"content of class {content.get('class')!r}, not {expected}",
            organization_id,
        )
    return content


def _count(content: Mapping[str, Any], key: str, envelope: Envelope, org: str | None) -> int:
    # The Module SDK's mocks carry counts as strings ("1"): digits in a string are accepted.
    value = content.get(key)
    if isinstance(value, str) and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _unexpected(envelope.status, f"{key}={value!r}, not a count", org)
    return value


def _list(content: Mapping[str, Any], key: str, envelope: Envelope, org: str | None) -> list[Any]:
    value = content.get(key)
    if not isinstance(value, list):
        raise _unexpected(envelope.status, f"{key} that is not a list", org)
    return value


def range_list(envelope: Envelope, *, organization_id: str | None) -> RangeList:
    """The RANGE_LIST in `envelope`; its range must be readable timestamps."""
    content = _of_class(envelope, "RANGE_LIST", organization_id)
    bounds = []
    for key in ("rangeStart", "rangeEnd"):
        value = content.get(key)
        try:
            parse_timestamp(value)
        except ValueError as exc:
            raise _unexpected(
                envelope.status, f"{key}={value!r} ({exc})", organization_id
            ) from None
        bounds.append(str(value))
    zone = content.get("timeZone")
    return RangeList(
        range_start=bounds[0],
        range_end=bounds[1],
        time_zone=zone if isinstance(zone, str) and zone else None,
        items=_list(content, "list", envelope, organization_id),
    )


def record_list(envelope: Envelope, *, organization_id: str | None) -> RecordList:
    """The LIST in `envelope`."""
    content = _of_class(envelope, "LIST", organization_id)
    records = _list(content, "recordList", envelope, organization_id)
    total = content.get("recordTotal")
    return RecordList(
        record_total=len(records)
        if total is None
        else _count(content, "recordTotal", envelope, organization_id),
        records=records,
    )


def page(envelope: Envelope, *, number: int, organization_id: str | None) -> Page:
    """The PAGINATION_LIST page `number` in `envelope`."""
    content = _of_class(envelope, "PAGINATION_LIST", organization_id)
    current = _count(content, "pageCurrent", envelope, organization_id)
    if current != number:
        raise _unexpected(
            envelope.status, f"page {current} when page {number} was asked for", organization_id
        )
    records = _list(content, "recordList", envelope, organization_id)
    per_page = content.get("recordPerPage")
    if isinstance(per_page, int) and not isinstance(per_page, bool) and len(records) > per_page:
        raise _unexpected(
            envelope.status, f"{len(records)} records on a page of {per_page}", organization_id
        )
    return Page(
        page_current=current,
        page_total=_count(content, "pageTotal", envelope, organization_id),
        record_total=_count(content, "recordTotal", envelope, organization_id),
        records=records,
    )
