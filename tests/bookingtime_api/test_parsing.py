"""Timestamps, envelopes and records read strictly from literal documents: the SDK's own mocks,
its typos, and appointments as the App API renders them. Pure: no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.bookingtime_api.envelope import envelope_of, page, range_list, record_list
from app.bookingtime_api.errors import InvalidRecord, Transient, UnexpectedResponse
from app.bookingtime_api.schemas import (
    read_all,
    read_appointment,
    read_availability_exception,
    read_employee,
)
from app.bookingtime_api.values import entity_id, parse_timestamp
from tests.bookingtime_api import samples
from tests.bookingtime_api.samples import ORG, OTHER_ORG


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-01-01T00:00:00+01:00", datetime(2023, 12, 31, 23, tzinfo=UTC)),
        ("2024-01-01T18:15:00+00:00", datetime(2024, 1, 1, 18, 15, tzinfo=UTC)),
        ("2024-01-01T18:15:00Z", datetime(2024, 1, 1, 18, 15, tzinfo=UTC)),
        ("2024-01-01T18:15+0100", datetime(2024, 1, 1, 17, 15, tzinfo=UTC)),
        ("2024-01-01T18:15:00.250-02:30", datetime(2024, 1, 1, 20, 45, 0, 250000, tzinfo=UTC)),
    ],
)
def test_timestamps_with_an_offset_are_read(text: str, expected: datetime) -> None:
    moment = parse_timestamp(text)
    assert moment == expected
    assert moment.utcoffset() is not None


@pytest.mark.parametrize(
    "text",
    [
        samples.CUSTOM_ENTITY_TIMESTAMP,  # the SDK's mock: a two-digit year
        samples.TYPO_DAY,  # a three-digit day
        samples.TYPO_OFFSET,  # a one-digit offset hour
        "2024-01-01T18:15:00",  # no offset: which zone is meant?
        "2024-01-01",
        "20240101T181500+0100",
        "2024-13-01T00:00:00+01:00",
        "2024-01-01T24:30:00+01:00",
        "",
        "31.12.2019 09:00",  # the legacy d.m.Y H:i of old SDK tests
    ],
)
def test_timestamp_typos_are_refused_not_guessed(text: str) -> None:
    with pytest.raises(ValueError, match="timestamp"):
        parse_timestamp(text)


@pytest.mark.parametrize("value", [None, 1704067200, ["2024-01-01T00:00:00+01:00"]])
def test_a_timestamp_must_be_text(value: Any) -> None:
    with pytest.raises(ValueError, match="expected an ISO-8601 timestamp"):
        parse_timestamp(value)


def test_ids_that_go_into_a_path_are_checked() -> None:
    assert entity_id(ORG, prefix="f6", name="organization_id") == ORG
    for bad in ["f6short", "../../admin", ORG.replace("f6", "ed"), ORG[:-1] + "/", ORG + "0"]:
        with pytest.raises(ValueError, match="organization_id"):
            entity_id(bad, prefix="f6", name="organization_id")


# --- envelopes --------------------------------------------------------------------------------


def test_the_sdk_mocks_are_read() -> None:
    window = range_list(
        envelope_of(200, samples.RANGE_LIST_MOCK, organization_id=ORG), organization_id=ORG
    )
    assert (window.range_start, window.range_end) == (
        "2024-01-01T00:00:00+01:00",
        "2024-01-31T23:59:59+01:00",
    )
    assert window.time_zone == "Europe/Berlin" and window.items == []

    listed = record_list(
        envelope_of(200, samples.LIST_MOCK, organization_id=ORG), organization_id=ORG
    )
    assert (listed.record_total, listed.records, listed.truncated) == (0, [], False)

    counted = record_list(
        envelope_of(200, samples.LIST_MOCK_STRING_TOTAL, organization_id=ORG), organization_id=ORG
    )
    assert counted.record_total == 1 and len(counted.records) == 1

    first = page(
        envelope_of(200, samples.PAGINATION_MOCK, organization_id=ORG),
        number=1,
        organization_id=ORG,
    )
    assert (first.page_current, first.page_total, first.record_total) == (1, 1, 0)


def test_messages_are_kept() -> None:
    body = json.dumps(
        samples.envelope(
            {"class": "LIST", "recordTotal": 0, "recordList": []},
            {"class": "MESSAGE", "type": "success", "parameter": None, "text": "ok."},
        )
    ).encode()
    envelope = envelope_of(201, body, organization_id=ORG)
    assert envelope.status == 201
    assert [(m.type, m.parameter, m.text) for m in envelope.messages] == [("success", None, "ok.")]


@pytest.mark.parametrize(
    "body",
    [
        samples.RANGE_LIST_MOCK[:-20],  # cut short
        b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        b"",
        b"\xff\xfe{}",
    ],
)
def test_a_body_that_is_not_json_is_transient(body: bytes) -> None:
    with pytest.raises(Transient) as raised:
        envelope_of(200, body, organization_id=ORG)
    assert raised.value.retryable and raised.value.code == "not_json"
    assert raised.value.organization_id == ORG


@pytest.mark.parametrize(
    ("document", "reader", "fragment"),
    [
        ({"content": {"class": "LIST", "recordTotal": 0, "recordList": []}}, "range", "LIST"),
        (samples.envelope({"class": "RANGE_LIST"}), "list", "RANGE_LIST"),
        (samples.envelope([]), "range", "content of type list"),
        ({"class": "RANGE_LIST", "list": []}, "range", "envelope"),
        (samples.envelope({"mock-content": 1}), "list", "None"),
        (
            samples.envelope(samples.range_list([], start="23-12-08T00:00:00+01:00")),
            "range",
            "rangeStart",
        ),
        (
            samples.envelope({"class": "LIST", "recordTotal": -1, "recordList": []}),
            "list",
            "recordTotal",
        ),
        (
            samples.envelope({"class": "LIST", "recordTotal": 1, "recordList": {}}),
            "list",
            "recordList",
        ),
        ({"messageList": "oops", "content": []}, "list", "messageList"),
    ],
)
def test_json_in_another_shape_is_an_unexpected_response(
    document: Any, reader: str, fragment: str
) -> None:
    with pytest.raises(UnexpectedResponse) as raised:
        envelope = envelope_of(200, json.dumps(document).encode(), organization_id=ORG)
        if reader == "range":
            range_list(envelope, organization_id=ORG)
        else:
            record_list(envelope, organization_id=ORG)
    assert fragment in str(raised.value)
    assert raised.value.permanent and raised.value.status == 200


def test_a_page_must_be_the_one_asked_for() -> None:
    document = json.loads(samples.PAGINATION_MOCK)
    document["content"]["pageCurrent"] = 2
    envelope = envelope_of(200, json.dumps(document).encode(), organization_id=ORG)
    with pytest.raises(UnexpectedResponse, match="page 2 when page 1"):
        page(envelope, number=1, organization_id=ORG)
    document["content"].update(pageCurrent=1, recordPerPage=1, recordList=[{}, {}])
    envelope = envelope_of(200, json.dumps(document).encode(), organization_id=ORG)
    with pytest.raises(UnexpectedResponse, match="2 records on a page of 1"):
        page(envelope, number=1, organization_id=ORG)


# --- records ----------------------------------------------------------------------------------


def test_an_appointment_is_typed_and_keeps_its_raw_object() -> None:
    raw = samples.appointment(timestampAdd="2026-03-20T08:00:00+01:00", timestampEdit="")
    appointment = read_appointment(raw, organization_id=ORG)
    assert appointment.id == raw["id"] and appointment.custom_id == "mock-appointment"
    assert appointment.start == datetime(2026, 3, 27, 9, tzinfo=timezone(timedelta(hours=1)))
    assert appointment.end - appointment.start == timedelta(minutes=90)
    assert appointment.duration == 90 and appointment.time_zone == "Europe/Berlin"
    assert appointment.customer is None  # PHP's [] for "no object"
    assert appointment.address is not None and appointment.address["city"] == "Hamburg"
    assert appointment.booking_resource_ids == [samples.MAX]
    assert appointment.booking_resources[0].category == "EMPLOYEE"
    assert appointment.timestamp_add == datetime(2026, 3, 20, 7, tzinfo=UTC)
    assert appointment.timestamp_edit is None  # "" in the SDK's mocks: not set
    assert (appointment.canceled, appointment.moved) == (False, False)
    assert appointment.raw == raw and appointment.raw["priceGross"] == 34


@pytest.mark.parametrize(
    ("changes", "field", "fragment"),
    [
        ({"start": samples.TYPO_DAY}, "start", "2024-01-023"),
        ({"end": samples.TYPO_OFFSET}, "end", "+0:00"),
        ({"timestampEdit": samples.CUSTOM_ENTITY_TIMESTAMP}, "timestampEdit", "23-12-08"),
        ({"start": None}, "start", "NoneType"),
        ({"end": "2026-03-27T08:00:00+01:00"}, "end", "not before start"),
        ({"class": "APPOINTMENT_TEMPLATE"}, "class", "APPOINTMENT"),
        ({"canceled": "false"}, "canceled", "true or false"),
        ({"duration": "90 min"}, "duration", "minutes"),
        ({"name": 12}, "name", "text or null"),
        ({"customer": "Frau Meier"}, "customer", "object"),
        (
            {"bookingResourceList": [{"class": "BOOKING_RESOURCE_SHORT"}]},
            "bookingResourceList[0].id",
            "an id",
        ),
        ({"bookingResourceList": "br…"}, "bookingResourceList", "a list"),
        ({"organizationId": OTHER_ORG}, "organizationId", ORG),
    ],
)
def test_an_unreadable_field_names_the_appointment_and_the_field(
    changes: dict[str, Any], field: str, fragment: str
) -> None:
    raw = samples.appointment(7, **changes)
    with pytest.raises(InvalidRecord) as raised:
        read_appointment(raw, organization_id=ORG)
    error = raised.value
    assert error.field == field
    assert error.record_id == raw["id"] and error.record_class == "APPOINTMENT"
    assert error.raw == raw and error.permanent
    assert raw["id"] in str(error) and field in str(error) and fragment in str(error)


def test_one_bad_appointment_does_not_hide_the_others() -> None:
    items = [
        samples.appointment(1),
        samples.appointment(2, start=samples.CUSTOM_ENTITY_TIMESTAMP),
        "not an object",
        samples.appointment(3, canceled=True),
    ]
    listing = read_all(items, lambda raw: read_appointment(raw, organization_id=ORG))
    assert [a.id for a in listing.items] == [items[0]["id"], items[3]["id"]]
    assert listing.items[1].canceled
    assert [(e.record_id, e.field) for e in listing.invalid] == [
        (items[1]["id"], "start"),
        (None, ""),
    ]


def test_other_records_are_read_with_their_own_class() -> None:
    employee = read_employee(
        {
            "class": "EMPLOYEE",
            "id": "EhSampleEmployee0000000000000001",
            "firstName": "Max",
            "lastName": "Mustermann",
            "email": "max@contoso.example",
            "customId": None,
        }
    )
    assert (employee.first_name, employee.email) == ("Max", "max@contoso.example")
    exception = read_availability_exception(
        {
            "class": "AVAILABILITY_EXCEPTION",
            "id": "acSampleException000000000000001",
            "name": "Outlook",
            "type": "FREE",
            "bookingResourceId": samples.MAX,
            "start": "2021-10-29T12:00:00+01:00",
            "end": "2021-10-29T19:00:00+01:00",
        }
    )
    assert exception.end is not None and exception.start is not None
    assert exception.end - exception.start == timedelta(hours=7)
    with pytest.raises(InvalidRecord, match="class"):
        read_employee({"class": "BOOKING_RESOURCE", "id": "EhSampleEmployee0000000000000001"})
