"""translate(): a bookingtime appointment → the Outlook event calbridge writes (pure, no I/O),
with the per-connection TranslationSettings and per-field content hashes for minimal updates.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any, Literal, cast

from app.graph.schemas import DateTimeTimeZone, EventWrite, ItemBody, Location
from app.history.messages import message
from app.sync.settings import CATEGORY_MAX, SUBJECT_MAX, Locale, TranslationSettings
from app.sync.timezones import graph_time, load_zone

ShowAs = Literal["busy", "free"]

# The instants an appointment may have (the webhook refuses others at the door): wide enough for
# any booking, far enough from year 1 and 9999 that no conversion into a zone's wall time, ours
# or Graph's, can leave the calendar.
EARLIEST = datetime(1900, 1, 1, tzinfo=UTC)
LATEST = datetime(2999, 12, 31, 23, 59, 59, tzinfo=UTC)

#: Every top-level event field calbridge writes, in Graph's names: the unit of change detection.
EVENT_FIELDS: tuple[str, ...] = (
    "subject",
    "body",
    "start",
    "end",
    "location",
    "showAs",
    "categories",
    "isReminderOn",
    "reminderMinutesBeforeStart",
)

# Our own bounds (Exchange takes far more), so a runaway description cannot grow requests or
# hashes without limit.
LOCATION_MAX = 255
BODY_MAX = 32_000

_LABELS: Mapping[Locale, Mapping[str, str]] = {
    "de": {
        "customer": "Kunde",
        "email": "E-Mail",
        "phone": "Telefon",
        "notes": "Notizen",
        "canceled": "Abgesagt: ",
        "appointment": "Termin",
    },
    "en": {
        "customer": "Customer",
        "email": "Email",
        "phone": "Phone",
        "notes": "Notes",
        "canceled": "Canceled: ",
        "appointment": "Appointment",
    },
}


class InvalidAppointment(ValueError):
    """The payload cannot be translated (bad or missing times): a permanent error for the job.
    `reason` (a code of the history's REASONS) and `params` let the history say why in either
    language; str() is the English text."""

    def __init__(self, reason: str, **params: str) -> None:
        self.reason = reason
        self.params = params
        super().__init__(message(reason, "en", params))


# --- the translated event ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class GraphTime:
    """Graph's dateTimeTimeZone: `date_time` is wall time in the Windows zone `time_zone`."""

    date_time: str
    time_zone: str

    def to_graph(self) -> DateTimeTimeZone:
        return {"dateTime": self.date_time, "timeZone": self.time_zone}


@dataclass(frozen=True, slots=True)
class Place:
    """The event's location: a one-line `display_name` plus Graph's physicalAddress parts."""

    display_name: str = ""
    street: str = ""
    postal_code: str = ""
    city: str = ""
    country_or_region: str = ""

    def to_graph(self) -> Location:
        location: Location = {"displayName": self.display_name}
        address = {
            key: value
            for key, value in (
                ("street", self.street),
                ("postalCode", self.postal_code),
                ("city", self.city),
                ("countryOrRegion", self.country_or_region),
            )
            if value
        }
        if address:
            location["address"] = address
        return location


@dataclass(frozen=True, slots=True)
class EventBody:
    """The event calbridge wants in Outlook. Never carries attendees: with app-only writes
    Graph would mail an invitation to every attendee (customers included)."""

    subject: str
    text: str
    start: GraphTime
    end: GraphTime
    location: Place
    show_as: ShowAs
    categories: tuple[str, ...]
    reminder_minutes: int | None

    def to_graph(self) -> EventWrite:
        """The JSON body for a create (the client adds transactionId and the tag)."""
        body: ItemBody = {"contentType": "text", "content": self.text}
        event: EventWrite = {
            "subject": self.subject,
            "body": body,
            "start": self.start.to_graph(),
            "end": self.end.to_graph(),
            "location": self.location.to_graph(),
            "showAs": self.show_as,
            "categories": list(self.categories),
            "isReminderOn": self.reminder_minutes is not None,
        }
        if self.reminder_minutes is not None:
            event["reminderMinutesBeforeStart"] = self.reminder_minutes
        return event

    def fields(self, names: Sequence[str]) -> EventWrite:
        """Only the named fields of `to_graph()` (an update's PATCH body)."""
        full: dict[str, Any] = dict(self.to_graph())
        return cast(EventWrite, {name: full[name] for name in names if name in full})

    def field_hashes(self) -> dict[str, str]:
        """sha256 of each written field's canonical JSON: what changed since the last write."""
        return {name: content_hash(value) for name, value in dict(self.to_graph()).items()}


def content_hash(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- translate ---------------------------------------------------------------------------------


def translate(
    appointment: Mapping[str, Any], settings: TranslationSettings, *, canceled: bool | None = None
) -> EventBody:
    """The event for an appointment. A canceled one comes out marked (prefixed subject, free,
    no reminder): what `on_cancel="mark"` keeps; `canceled` overrides the payload's flag."""
    labels = _LABELS[settings.locale]
    if canceled is None:
        canceled = appointment.get("canceled") is True
    zone = _str(appointment.get("timeZone")) or None
    start = _instant(appointment.get("start"), zone, "start")
    end = _instant(appointment.get("end"), zone, "end")
    if end < start:
        raise InvalidAppointment("appointment_ends_before_start")
    try:
        start_time = GraphTime(*graph_time(start, zone))
        end_time = GraphTime(*graph_time(end, zone))
    except OverflowError:  # defence in depth: _instant's range keeps every wall time in it
        raise InvalidAppointment("appointment_outside_calendar") from None

    subject = render_subject(settings.subject_template, appointment) or labels["appointment"]
    if canceled:
        subject = labels["canceled"] + subject
    return EventBody(
        subject=_cap(_line(subject), SUBJECT_MAX),
        text=_cap(_body_text(appointment, settings), BODY_MAX),
        start=start_time,
        end=end_time,
        location=_place(appointment.get("address")),
        show_as="free" if canceled else "busy",
        categories=(_cap(_line(settings.category), CATEGORY_MAX),) if settings.category else (),
        reminder_minutes=None if canceled else settings.reminder_minutes,
    )


def appointment_end(appointment: Mapping[str, Any]) -> datetime | None:
    """When the appointment ends (aware), or None when its payload has no usable end time."""
    zone = _str(appointment.get("timeZone")) or None
    try:
        return _instant(appointment.get("end"), zone, "end")
    except InvalidAppointment:
        return None


def render_subject(template: str, appointment: Mapping[str, Any]) -> str:
    """The template with the appointment's values; an empty value takes its separators along
    ("{name} – {customer}" without a customer is just the name)."""
    values = {
        "name": _line(appointment.get("name")),
        "customer": ", ".join(_full_name(c) for c in _customers(appointment) if _full_name(c)),
        "service": _line(_mapping(appointment.get("bookingTemplate")).get("name")),
        "employee": ", ".join(
            name
            for r in _employees(appointment)
            if (name := _person_name(r) or _line(r.get("name")))
        ),
        "city": _line(_mapping(appointment.get("address")).get("city")),
    }
    # Alternate literal text and values; a dropped value merges the literals around it, and only
    # such merged template text is cleaned, never the appointment's own text.
    pieces: list[tuple[str, bool]] = []  # (text, is a value)
    touched: set[int] = set()  # indexes of literals next to a dropped value
    for literal, field in _template(template):
        if literal:
            if pieces and not pieces[-1][1]:
                pieces[-1] = (pieces[-1][0] + literal, False)
            else:
                pieces.append((literal, False))
        if field is None:
            continue
        value = values[field]
        if value:
            pieces.append((value, True))
        elif pieces and not pieces[-1][1]:
            touched.add(len(pieces) - 1)
        else:
            pieces.append(("", False))
            touched.add(len(pieces) - 1)
    # The literal after a dropped value was merged into the touched one before it.
    out: list[str] = []
    for index, (text, is_value) in enumerate(pieces):
        if not is_value and index in touched:
            text = _tidy(text, first=index == 0, last=index == len(pieces) - 1)
        out.append(text)
    return _WHITESPACE.sub(" ", "".join(out)).strip()


@lru_cache(maxsize=64)  # a connection's template, parsed for each of its appointments
def _template(template: str) -> tuple[tuple[str, str | None], ...]:
    return tuple((literal, field) for literal, field, _, _ in string.Formatter().parse(template))


_WHITESPACE = re.compile(r"\s+")
_SEPARATORS = "-–—|:;,/·•"
_EMPTY_BRACKETS = re.compile(r"\(\s*\)|\[\s*\]|\{\s*\}|<\s*>|\"\s*\"|'\s*'|„\s*“")
_SEPARATOR = f"[{re.escape(_SEPARATORS)}]"
_REPEATED_SEPARATORS = re.compile(rf"({_SEPARATOR})(?:\s*{_SEPARATOR})+")


def _tidy(literal: str, *, first: bool, last: bool) -> str:
    text = _EMPTY_BRACKETS.sub("", literal)
    text = _REPEATED_SEPARATORS.sub(r"\1", text)
    strip = _SEPARATORS + " \t([{<"
    if first:
        text = text.lstrip(_SEPARATORS + " \t)]}>")
    if last:
        text = text.rstrip(strip)
    return re.sub(r"\s{2,}", " ", text)


def _body_text(appointment: Mapping[str, Any], settings: TranslationSettings) -> str:
    labels = _LABELS[settings.locale]
    blocks: list[str] = []
    if description := _text(appointment.get("description")):
        blocks.append(description)
    if notes := _text(appointment.get("notes")):
        blocks.append(f"{labels['notes']}:\n{notes}")
    for customer in _customers(appointment):
        lines = []
        if name := _full_name(customer):
            lines.append(f"{labels['customer']}: {name}")
        if settings.include_customer_contact:
            if email := _line(customer.get("email")):
                lines.append(f"{labels['email']}: {email}")
            if phone := _line(customer.get("mobile")) or _line(customer.get("phone")):
                lines.append(f"{labels['phone']}: {phone}")
        if lines:
            blocks.append("\n".join(lines))
    return "\n\n".join(blocks)


def _place(address: Any) -> Place:
    fields = ("name", "extra", "street", "zip", "city", "country")
    name, extra, street, postal_code, city, country = (
        _line(_mapping(address).get(key)) for key in fields
    )
    town = " ".join(p for p in (postal_code, city) if p)
    display = ", ".join(p for p in (name, extra, street, town, country) if p)
    return Place(
        display_name=_cap(display, LOCATION_MAX),
        street=", ".join(p for p in (street, extra) if p),
        postal_code=postal_code,
        city=city,
        country_or_region=country,
    )


def _instant(value: Any, zone: str | None, what: Literal["start", "end"]) -> datetime:
    field = f"time_{what}"  # the field's name in the history's language
    if not isinstance(value, str) or not value:
        raise InvalidAppointment("time_missing", field_code=field)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise InvalidAppointment("time_not_iso", field_code=field) from None
    if moment.utcoffset() is None:
        # No offset: bookingtime's wall time in the appointment's zone, or nothing we can place.
        tz = load_zone(zone) if zone else None
        if tz is None:
            raise InvalidAppointment("time_without_zone", field_code=field)
        moment = moment.replace(tzinfo=tz)
    # The webhook refuses these already; a snapshot stored before it did, or from another
    # source, still never reaches Graph as a date it cannot take (year 1) or overflows (9999).
    try:
        utc = moment.astimezone(UTC)
    except OverflowError:
        utc = None
    if utc is None or not EARLIEST <= utc <= LATEST:
        raise InvalidAppointment(
            "time_out_of_range",
            field_code=field,
            value=value,
            earliest=f"{EARLIEST:%Y-%m-%d}",
            latest=f"{LATEST:%Y-%m-%d}",
        )
    return moment


# --- payload helpers: bookingtime sends objects, lists or nulls where one might expect either ---


def _customers(appointment: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    customer = appointment.get("customer")
    items = customer if isinstance(customer, list) else [customer]
    return (item for item in items if isinstance(item, Mapping))


def _employees(appointment: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    resources = appointment.get("bookingResourceList")
    return (
        r
        for r in (resources if isinstance(resources, list) else [])
        if isinstance(r, Mapping) and str(r.get("type", "")).upper() == "EMPLOYEE"
    )


def _full_name(customer: Mapping[str, Any]) -> str:
    return _person_name(customer) or _line(customer.get("name"))


def _person_name(person: Mapping[str, Any]) -> str:
    return " ".join(p for p in (_line(person.get("firstName")), _line(person.get("lastName"))) if p)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str(value: Any) -> str:
    return value if isinstance(value, str) else ""


# Cc (control characters Graph rejects or mangles) is exactly U+0000-001F and U+007F-009F; Cs
# (lone surrogates JSON can smuggle in, which cannot even be encoded as UTF-8) is U+D800-DFFF.
_INVISIBLE = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]")
_INVISIBLE_IN_TEXT = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff]")  # \t, \n stay
_NEWLINES = re.compile("\r\n?|[\u2028\u2029]")
_BREAKS = re.compile("[\r\n\t\u2028\u2029]")
_SPACES = re.compile(" {2,}")


def _text(value: Any) -> str:
    """Multi-line text without control characters (tabs and newlines stay)."""
    return _INVISIBLE_IN_TEXT.sub("", _NEWLINES.sub("\n", _str(value))).strip()


def _line(value: Any) -> str:
    """Single-line text: line breaks and tabs become spaces, control characters go."""
    return _SPACES.sub(" ", _INVISIBLE.sub("", _BREAKS.sub(" ", _str(value)))).strip()


def _cap(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
