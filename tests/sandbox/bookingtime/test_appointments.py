"""Appointment reads: RANGE_LISTs by ISO week, month and day in the organisation's time zone
(a year with week 53, the October daylight-saving change), show and identify, and the switches
for canceled appointments and timestampEdit."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from tests.sandbox.bookingtime.conftest import World, access_token, assert_failure

BERLIN = ZoneInfo("Europe/Berlin")
APPOINTMENT_KEYS = {
    "class", "id", "customId", "start", "end", "duration", "timeZone", "protected", "name",
    "nameI18nList", "description", "descriptionI18nList", "notes", "showPrice", "priceGross",
    "taxRate", "currency", "customer", "address", "canceled", "moved", "bookingResourceList",
    "fileList", "organizationId",
}  # fmt: skip


def berlin(year: int, month: int, day: int, hour: int, minute: int) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=BERLIN)


def book(world: World, start: datetime, end: datetime, **fields: Any) -> str:
    fields.setdefault("booking_resource_ids", [world.max_br])
    return world.control.book(world.org, start=start, end=end, **fields)


async def content(api: httpx.AsyncClient, url: str) -> Any:
    response = await api.get(url)
    assert response.status_code == 200, response.text
    body = response.json()
    assert set(body) == {"messageList", "content"} and body["messageList"] == []
    return body["content"]


def ids(range_list: dict[str, Any]) -> list[str]:
    return [item["id"] for item in range_list["list"]]


async def test_range_list_and_appointment_shapes(api: httpx.AsyncClient, world: World) -> None:
    appointment_id = book(
        world,
        berlin(2026, 12, 8, 9, 0),
        berlin(2026, 12, 8, 10, 30),
        booking_resource_ids=[world.max_br, world.erika_br],
        name="Beratung",
        notes="bitte Unterlagen mitbringen",
        customer={"firstName": "Eva", "lastName": "Kunde", "email": "eva@example.org"},
        address={"street": "Hauptstraße 1", "zip": "20095", "city": "Hamburg"},
    )
    week = await content(api, world.api("appointment/year/2026/week/50/listWeek"))
    assert set(week) == {"class", "rangeStart", "rangeEnd", "timeZone", "list"}
    assert week["class"] == "RANGE_LIST" and week["timeZone"] == "Europe/Berlin"
    [item] = week["list"]
    assert set(item) == APPOINTMENT_KEYS
    assert item["class"] == "APPOINTMENT" and item["id"] == appointment_id
    assert re.fullmatch(r"ed[a-zA-Z0-9]{30}", item["id"])
    assert (item["start"], item["end"]) == (
        "2026-12-08T09:00:00+01:00",
        "2026-12-08T10:30:00+01:00",
    )
    assert item["duration"] == 90 and item["timeZone"] == "Europe/Berlin"
    assert (item["name"], item["notes"]) == ("Beratung", "bitte Unterlagen mitbringen")
    assert item["customer"]["email"] == "eva@example.org"
    assert re.fullmatch(r"d3[a-zA-Z0-9]{30}", item["customer"]["id"])
    assert item["address"]["city"] == "Hamburg"
    assert item["canceled"] is False and item["moved"] is False
    assert item["organizationId"] == world.org
    assert item["bookingResourceList"] == [
        {
            "class": "BOOKING_RESOURCE_SHORT",
            "id": world.max_br,
            "customId": "MA1",
            "category": "EMPLOYEE",
            "name": "Max Mustermann",
            "organizationId": world.org,
        },
        {
            "class": "BOOKING_RESOURCE_SHORT",
            "id": world.erika_br,
            "customId": "MA2",
            "category": "EMPLOYEE",
            "name": "Erika Mustermann",
            "organizationId": world.org,
        },
    ]
    zero_length = book(world, berlin(2026, 12, 9, 9, 0), berlin(2026, 12, 9, 9, 0))
    bare = await content(api, world.api(f"appointment/{zero_length}/show"))
    assert bare["customer"] == [] and bare["address"] == [] and bare["duration"] == 0


async def test_week_53_and_the_year_boundary(api: httpx.AsyncClient, world: World) -> None:
    new_years_eve = book(world, berlin(2026, 12, 31, 18, 0), berlin(2026, 12, 31, 19, 0))
    saturday = book(world, berlin(2027, 1, 2, 10, 0), berlin(2027, 1, 2, 11, 0))
    monday = book(world, berlin(2027, 1, 4, 9, 0), berlin(2027, 1, 4, 10, 0))

    week_53 = await content(api, world.api("appointment/year/2026/week/53/listWeek"))
    assert week_53["rangeStart"] == "2026-12-28T00:00:00+01:00"
    assert week_53["rangeEnd"] == "2027-01-03T23:59:59+01:00"
    assert ids(week_53) == [new_years_eve, saturday]
    week_1 = await content(api, world.api("appointment/year/2027/week/1/listWeek"))
    assert week_1["rangeStart"] == "2027-01-04T00:00:00+01:00"
    assert ids(week_1) == [monday]
    december = await content(api, world.api("appointment/year/2026/month/12/listMonth"))
    assert (december["rangeStart"], december["rangeEnd"]) == (
        "2026-12-01T00:00:00+01:00",
        "2026-12-31T23:59:59+01:00",
    )
    assert ids(december) == [new_years_eve]
    january = await content(api, world.api("appointment/year/2027/month/1/listMonth"))
    assert ids(january) == [saturday, monday]
    # 2025 has 52 ISO weeks, 2026 has 53.
    assert_failure(await api.get(world.api("appointment/year/2025/week/53/listWeek")), 400, "week")


async def test_daylight_saving_change_inside_a_week(api: httpx.AsyncClient, world: World) -> None:
    # Berlin leaves summer time on Sunday 2026-10-25 (the last Sunday of October), in ISO week 43.
    saturday = book(world, berlin(2026, 10, 24, 10, 0), berlin(2026, 10, 24, 11, 0))
    sunday = book(
        world, datetime(2026, 10, 25, 9, 0, tzinfo=UTC), datetime(2026, 10, 25, 10, 0, tzinfo=UTC)
    )
    over_midnight = book(world, berlin(2026, 10, 25, 23, 30), berlin(2026, 10, 26, 0, 30))
    monday = book(world, berlin(2026, 10, 26, 9, 0), berlin(2026, 10, 26, 10, 0))
    across_the_change = book(world, berlin(2026, 10, 25, 1, 30), berlin(2026, 10, 25, 3, 30))

    week = await content(api, world.api("appointment/year/2026/week/43/listWeek"))
    assert week["rangeStart"] == "2026-10-19T00:00:00+02:00"
    assert week["rangeEnd"] == "2026-10-25T23:59:59+01:00"
    assert ids(week) == [saturday, across_the_change, sunday, over_midnight]
    shown = {item["id"]: item for item in week["list"]}
    assert shown[saturday]["start"] == "2026-10-24T10:00:00+02:00"
    assert shown[sunday]["start"] == "2026-10-25T10:00:00+01:00"
    assert shown[over_midnight]["end"] == "2026-10-26T00:30:00+01:00"
    changed = shown[across_the_change]
    assert (changed["start"], changed["end"]) == (
        "2026-10-25T01:30:00+02:00",
        "2026-10-25T03:30:00+01:00",
    )
    assert changed["duration"] == 180  # the night has an extra hour
    # An appointment belongs to every range it overlaps.
    next_week = await content(api, world.api("appointment/year/2026/week/44/listWeek"))
    assert next_week["rangeStart"] == "2026-10-26T00:00:00+01:00"
    assert ids(next_week) == [over_midnight, monday]
    day = await content(api, world.api("appointment/year/2026/month/10/day/25/listDay"))
    assert (day["rangeStart"], day["rangeEnd"]) == (
        "2026-10-25T00:00:00+02:00",
        "2026-10-25T23:59:59+01:00",
    )
    assert ids(day) == [across_the_change, sunday, over_midnight]
    october = await content(api, world.api("appointment/year/2026/month/10/listMonth"))
    assert (october["rangeStart"], october["rangeEnd"]) == (
        "2026-10-01T00:00:00+02:00",
        "2026-10-31T23:59:59+01:00",
    )
    assert len(october["list"]) == 5


async def test_ranges_follow_the_organization_time_zone(
    http: httpx.AsyncClient, world: World
) -> None:
    new_york = world.control.add_organization(time_zone="America/New_York")
    world.control.permit(world.client_id, new_york)
    resource = world.control.add_booking_resource(new_york, name="Dana")
    # Monday 03:00 UTC is Sunday evening in New York (summer time there lasts until November).
    late = world.control.book(
        new_york,
        start=datetime(2026, 10, 26, 3, 0, tzinfo=UTC),
        end=datetime(2026, 10, 26, 4, 0, tzinfo=UTC),
        booking_resource_ids=[resource],
    )
    http.headers["Authorization"] = f"Bearer {await access_token(http, world, new_york)}"
    week = await content(http, world.api("appointment/year/2026/week/43/listWeek", org=new_york))
    assert week["timeZone"] == "America/New_York"
    assert week["rangeStart"] == "2026-10-19T00:00:00-04:00"
    assert ids(week) == [late]
    assert week["list"][0]["start"] == "2026-10-25T23:00:00-04:00"


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("year/2026/week/0/listWeek", "week"),
        ("year/2026/week/54/listWeek", "week"),
        ("year/20x6/week/1/listWeek", "year"),
        ("year/2026/month/13/listMonth", "month"),
        ("year/2026/month/0/listMonth", "month"),
        ("year/2026/month/11/day/31/listDay", "day"),
        ("year/2026/month/2/day/29/listDay", "day"),
        ("year/2026/month/x/day/1/listDay", "month"),
    ],
)
async def test_bad_range_values_name_the_parameter(
    api: httpx.AsyncClient, world: World, path: str, parameter: str
) -> None:
    assert_failure(await api.get(world.api(f"appointment/{path}")), 400, parameter)


async def test_show_identify_and_hard_delete(api: httpx.AsyncClient, world: World) -> None:
    appointment_id = book(
        world, berlin(2026, 12, 8, 9, 0), berlin(2026, 12, 8, 10, 0), custom_id="cb-42"
    )
    shown = await content(api, world.api(f"appointment/{appointment_id}/show"))
    assert shown == world.control.appointment(world.org, appointment_id)
    identified = await content(api, world.api("appointment/cb-42/identify"))
    assert identified["id"] == appointment_id and identified["customId"] == "cb-42"
    assert_failure(await api.get(world.api("appointment/cb-43/identify")), 404, "customId")
    unknown = await api.get(world.api("appointment/ed" + "0" * 30 + "/show"))
    assert_failure(unknown, 404, "appointmentId")

    world.control.hard_delete(world.org, appointment_id)
    deleted = await api.get(world.api(f"appointment/{appointment_id}/show"))
    assert_failure(deleted, 404, "appointmentId")
    assert ids(await content(api, world.api("appointment/year/2026/week/50/listWeek"))) == []


async def test_moves_reassignments_and_edits_show_up(api: httpx.AsyncClient, world: World) -> None:
    appointment_id = book(world, berlin(2026, 12, 8, 9, 0), berlin(2026, 12, 8, 10, 0))
    world.control.move(
        world.org,
        appointment_id,
        start=berlin(2026, 12, 15, 14, 0),
        end=berlin(2026, 12, 15, 15, 0),
    )
    world.control.reassign(world.org, appointment_id, [world.erika_br])
    world.control.edit(world.org, appointment_id, notes="verschoben", name="Kontrolle")
    assert ids(await content(api, world.api("appointment/year/2026/week/50/listWeek"))) == []
    [item] = (await content(api, world.api("appointment/year/2026/week/51/listWeek")))["list"]
    assert item["moved"] is True and item["start"] == "2026-12-15T14:00:00+01:00"
    assert [r["id"] for r in item["bookingResourceList"]] == [world.erika_br]
    assert (item["notes"], item["name"]) == ("verschoben", "Kontrolle")
    with pytest.raises(ValueError, match="cannot edit"):
        world.control.edit(world.org, appointment_id, start=berlin(2026, 12, 1, 9, 0))


@pytest.mark.parametrize("list_canceled", [True, False])
async def test_switch_canceled_appointments_in_lists(
    api: httpx.AsyncClient, world: World, list_canceled: bool
) -> None:
    world.control.switches.list_canceled = list_canceled
    kept = book(world, berlin(2026, 12, 8, 9, 0), berlin(2026, 12, 8, 10, 0))
    canceled = book(world, berlin(2026, 12, 8, 11, 0), berlin(2026, 12, 8, 12, 0))
    world.control.cancel(world.org, canceled)
    week = await content(api, world.api("appointment/year/2026/week/50/listWeek"))
    assert ids(week) == ([kept, canceled] if list_canceled else [kept])
    shown = await content(api, world.api(f"appointment/{canceled}/show"))
    assert shown["canceled"] is True  # show finds it either way


async def test_switch_timestamp_edit(api: httpx.AsyncClient, world: World) -> None:
    world.sandbox.control.clock.freeze()
    appointment_id = book(world, berlin(2026, 12, 8, 9, 0), berlin(2026, 12, 8, 10, 0))
    url = world.api(f"appointment/{appointment_id}/show")
    shown = await content(api, url)
    assert "timestampEdit" not in shown and "timestampAdd" not in shown

    world.control.switches.timestamp_edit = True
    before = await content(api, url)
    assert before["timestampAdd"] == before["timestampEdit"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", before["timestampEdit"])
    world.sandbox.control.clock.advance(timedelta(minutes=2))  # within the access token's life
    world.control.cancel(world.org, appointment_id)
    after = await content(api, url)
    assert after["timestampAdd"] == before["timestampAdd"]
    edited = datetime.fromisoformat(after["timestampEdit"])
    assert edited - datetime.fromisoformat(before["timestampEdit"]) == timedelta(minutes=2)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "appointment/ed123/show"),
        ("DELETE", "appointment/ed123/show"),
        ("PUT", "appointment/year/2026/week/1/listWeek"),
        ("POST", "appointment/year/2026/month/1/listMonth"),
    ],
)
async def test_wrong_method_on_a_known_route_is_405(
    api: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    response = await api.request(method, world.api(path))
    assert_failure(response, 405)
    assert response.headers["allow"] == "GET"


async def test_unknown_route_is_404(api: httpx.AsyncClient, world: World) -> None:
    assert "No route found" in assert_failure(await api.get(world.api("appointment/list")), 404)
