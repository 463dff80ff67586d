"""What the App API answers, as typed records that keep the raw JSON object beside the fields
calbridge reads, and the readers that build them. Pure: no I/O.

A reader refuses a record whose field it cannot read with `InvalidRecord` naming the record, the
field and the value; lists and windows collect those refusals beside the readable records, so
one bad appointment never hides the others.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from app.bookingtime_api.errors import InvalidRecord
from app.bookingtime_api.values import parse_timestamp

T = TypeVar("T")


class Record(BaseModel):
    """Fields are bookingtime's in snake_case; `raw` is the object exactly as received."""

    model_config = ConfigDict(frozen=True)

    id: str
    custom_id: str | None = None
    raw: dict[str, Any]


class BookingResourceRef(BaseModel):
    """A BOOKING_RESOURCE_SHORT inside an appointment's `bookingResourceList`."""

    model_config = ConfigDict(frozen=True)

    id: str
    custom_id: str | None = None
    category: str | None = None
    name: str | None = None


class Appointment(Record):
    start: datetime
    end: datetime
    duration: int | None = None  # minutes
    time_zone: str | None = None
    name: str | None = None
    description: str | None = None
    notes: str | None = None
    customer: dict[str, Any] | None = None
    address: dict[str, Any] | None = None
    canceled: bool = False
    moved: bool = False
    booking_resources: tuple[BookingResourceRef, ...] = ()
    organization_id: str | None = None
    timestamp_add: datetime | None = None
    timestamp_edit: datetime | None = None

    @property
    def booking_resource_ids(self) -> list[str]:
        return [resource.id for resource in self.booking_resources]


class BookingResource(Record):
    name: str | None = None
    category: str | None = None


class Employee(Record):
    first_name: str | None = None
    last_name: str | None = None
    email: str | None = None


class Synchronization(Record):
    booking_resource_id: str | None = None
    email: str | None = None
    type: str | None = None


class AvailabilityException(Record):
    name: str | None = None
    type: str | None = None
    booking_resource_id: str | None = None
    appointment_template_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None


@dataclass(frozen=True, slots=True)
class Listing(Generic[T]):
    """Readable records, and one InvalidRecord per record that could not be read."""

    items: list[T] = field(default_factory=list)
    invalid: list[InvalidRecord] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class AppointmentWindow:
    """A RANGE_LIST of appointments: the range as bookingtime computed it, in its time zone."""

    range_start: datetime
    range_end: datetime
    time_zone: str | None
    appointments: list[Appointment]
    invalid: list[InvalidRecord]


class _Reader:
    """Reads one raw record; each accessor raises InvalidRecord naming the field."""

    def __init__(self, raw: Any, record_class: str) -> None:
        self.record_class = record_class
        self.raw = raw
        record_id = raw.get("id") if isinstance(raw, Mapping) else None
        self.record_id = record_id if isinstance(record_id, str) else None
        if not isinstance(raw, Mapping):
            raise self.refuse("", raw, f"a JSON object, not {type(raw).__name__}")

    def refuse(self, name: str, value: Any, expected: str) -> InvalidRecord:
        where = f"{self.record_class} {self.record_id or '(no id)'}"
        shown = repr(value)
        shown = shown if len(shown) <= 80 else f"{shown[:80]}…"
        what = f"field {name}={shown}" if name else "the record"
        return InvalidRecord(
            f"{where}: {what} is unreadable: expected {expected}",
            code="invalid_record",
            record_class=self.record_class,
            record_id=self.record_id,
            field=name,
            value=value,
            raw=self.raw,
        )

    def check_class(self) -> None:
        value = self.raw.get("class")
        # Collections of detailed records say the full class; `listAll` gives *_SHORT ones.
        if value not in (self.record_class, f"{self.record_class}_SHORT"):
            raise self.refuse("class", value, repr(self.record_class))

    def id(self, prefix: str) -> str:
        value = self.raw.get("id")
        if not isinstance(value, str) or not value or not value.isalnum() or len(value) > 64:
            raise self.refuse("id", value, f"an id like {prefix}… (letters and digits)")
        return value

    def text(self, name: str) -> str | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.refuse(name, value, "text or null")
        return value

    def flag(self, name: str) -> bool:
        value = self.raw.get(name, False)
        if not isinstance(value, bool):
            raise self.refuse(name, value, "true or false")
        return value

    def minutes(self, name: str) -> int | None:
        value = self.raw.get(name)
        if value is None:
            return None
        if isinstance(value, str) and value.isdigit():
            value = int(value)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.refuse(name, value, "a whole number of minutes")
        return value

    def timestamp(self, name: str, *, required: bool) -> datetime | None:
        value = self.raw.get(name)
        # The SDK's mocks give "" for a timestamp not set yet (timestampEdit).
        if not required and (value is None or value == ""):
            return None
        try:
            return parse_timestamp(value)
        except ValueError as exc:
            raise self.refuse(name, value, str(exc)) from None

    def mapping(self, name: str) -> dict[str, Any] | None:
        value = self.raw.get(name)
        # PHP encodes an empty array as [] where an object is meant (`customer: []` in a mock).
        if value is None or value == []:
            return None
        if not isinstance(value, Mapping):
            raise self.refuse(name, value, "an object or null")
        return dict(value)


def _booking_resources(reader: _Reader) -> tuple[BookingResourceRef, ...]:
    value = reader.raw.get("bookingResourceList", [])
    if value is None:
        return ()
    if not isinstance(value, list):
        raise reader.refuse("bookingResourceList", value, "a list")
    refs = []
    for index, item in enumerate(value):
        name = f"bookingResourceList[{index}]"
        if not isinstance(item, Mapping):
            raise reader.refuse(name, item, "a BOOKING_RESOURCE_SHORT object")
        inner = _Reader(item, "BOOKING_RESOURCE")
        try:
            refs.append(
                BookingResourceRef(
                    id=inner.id("br"),
                    custom_id=inner.text("customId"),
                    category=inner.text("category"),
                    name=inner.text("name"),
                )
            )
        except InvalidRecord as exc:
            expected = "an id" if exc.field == "id" else "text or null"
            raise reader.refuse(f"{name}.{exc.field}", exc.value, expected) from None
    return tuple(refs)


def read_appointment(raw: Any, *, organization_id: str | None = None) -> Appointment:
    """An APPOINTMENT object, or InvalidRecord; one of another organisation is refused too."""
    reader = _Reader(raw, "APPOINTMENT")
    reader.check_class()
    start = reader.timestamp("start", required=True)
    end = reader.timestamp("end", required=True)
    assert start is not None and end is not None
    if end < start:
        raise reader.refuse("end", raw.get("end"), f"a time not before start {raw.get('start')!r}")
    owner = reader.text("organizationId")
    if organization_id is not None and owner is not None and owner != organization_id:
        raise reader.refuse("organizationId", owner, f"organisation {organization_id}")
    return Appointment(
        id=reader.id("ed"),
        custom_id=reader.text("customId"),
        start=start,
        end=end,
        duration=reader.minutes("duration"),
        time_zone=reader.text("timeZone"),
        name=reader.text("name"),
        description=reader.text("description"),
        notes=reader.text("notes"),
        customer=reader.mapping("customer"),
        address=reader.mapping("address"),
        canceled=reader.flag("canceled"),
        moved=reader.flag("moved"),
        booking_resources=_booking_resources(reader),
        organization_id=owner,
        timestamp_add=reader.timestamp("timestampAdd", required=False),
        timestamp_edit=reader.timestamp("timestampEdit", required=False),
        raw=dict(raw),
    )


def read_booking_resource(raw: Any) -> BookingResource:
    reader = _Reader(raw, "BOOKING_RESOURCE")
    reader.check_class()
    return BookingResource(
        id=reader.id("br"),
        custom_id=reader.text("customId"),
        name=reader.text("name"),
        category=reader.text("category"),
        raw=dict(raw),
    )


def read_employee(raw: Any) -> Employee:
    reader = _Reader(raw, "EMPLOYEE")
    reader.check_class()
    return Employee(
        id=reader.id("Eh"),
        custom_id=reader.text("customId"),
        first_name=reader.text("firstName"),
        last_name=reader.text("lastName"),
        email=reader.text("email"),
        raw=dict(raw),
    )


def read_synchronization(raw: Any) -> Synchronization:
    reader = _Reader(raw, "SYNCHRONIZATION")
    reader.check_class()
    return Synchronization(
        id=reader.id("A7"),
        custom_id=reader.text("customId"),
        booking_resource_id=reader.text("bookingResourceId"),
        email=reader.text("email"),
        type=reader.text("type"),
        raw=dict(raw),
    )


def read_availability_exception(raw: Any) -> AvailabilityException:
    reader = _Reader(raw, "AVAILABILITY_EXCEPTION")
    reader.check_class()
    return AvailabilityException(
        id=reader.id("ac"),
        custom_id=reader.text("customId"),
        name=reader.text("name"),
        type=reader.text("type"),
        booking_resource_id=reader.text("bookingResourceId"),
        appointment_template_id=reader.text("appointmentTemplateId"),
        start=reader.timestamp("start", required=False),
        end=reader.timestamp("end", required=False),
        raw=dict(raw),
    )


def read_all(items: list[Any], read: Callable[[Any], T]) -> Listing[T]:
    """Every item read with `read`; the unreadable ones listed apart, in order."""
    listing: Listing[T] = Listing()
    for item in items:
        try:
            listing.items.append(read(item))
        except InvalidRecord as exc:
            listing.invalid.append(exc)
    return listing
