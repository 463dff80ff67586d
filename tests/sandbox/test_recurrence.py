"""Recurring series: the expansion rules alone, and occurrences in calendarView over HTTPS."""

from __future__ import annotations

from datetime import date
from typing import Any

import httpx
import pytest

from app.sandbox.errors import GraphError
from app.sandbox.recurrence import normalize, occurrence_dates
from tests.sandbox.conftest import Setup
from tests.sandbox.schema import assert_event, assert_graph_error, assert_valid

BERLIN = "W. Europe Standard Time"


def _series(pattern: dict[str, Any], rng: dict[str, Any]) -> dict[str, Any]:
    return normalize({"pattern": pattern, "range": rng}, None)


def _dates(pattern: dict[str, Any], rng: dict[str, Any], until: str) -> list[str]:
    found = occurrence_dates(_series(pattern, rng), date.fromisoformat(until))
    return [d.isoformat() for d in found]


def test_daily_interval_and_count() -> None:
    rng = {"type": "numbered", "startDate": "2024-05-01", "numberOfOccurrences": 3}
    assert _dates({"type": "daily", "interval": 2}, rng, "2024-12-31") == [
        "2024-05-01",
        "2024-05-03",
        "2024-05-05",
    ]


def test_weekly_days_first_day_of_week_and_end_date() -> None:
    # Every 2nd week, Monday and Sunday, weeks starting Monday: 2024-05-01 is a Wednesday.
    pattern = {
        "type": "weekly",
        "interval": 2,
        "daysOfWeek": ["monday", "sunday"],
        "firstDayOfWeek": "monday",
    }
    rng = {"type": "endDate", "startDate": "2024-05-01", "endDate": "2024-05-26"}
    assert _dates(pattern, rng, "2024-12-31") == ["2024-05-05", "2024-05-13", "2024-05-19"]
    # With Sunday as first day, the Sunday belongs to the following week.
    pattern["firstDayOfWeek"] = "sunday"
    assert _dates(pattern, rng, "2024-12-31") == ["2024-05-12", "2024-05-13", "2024-05-26"]


def test_monthly_and_yearly() -> None:
    rng = {"type": "numbered", "startDate": "2024-01-15", "numberOfOccurrences": 4}
    monthly = {"type": "absoluteMonthly", "dayOfMonth": 31}
    assert _dates(monthly, rng, "2025-01-01") == [
        "2024-01-31",
        "2024-02-29",
        "2024-03-31",
        "2024-04-30",
    ]
    every_second = {"type": "absoluteMonthly", "interval": 2, "dayOfMonth": 10}
    assert _dates(every_second, rng, "2024-08-01") == ["2024-03-10", "2024-05-10", "2024-07-10"]
    relative = {"type": "relativeMonthly", "daysOfWeek": ["tuesday"], "index": "second"}
    assert _dates(relative, rng, "2025-01-01") == [
        "2024-02-13",
        "2024-03-12",
        "2024-04-09",
        "2024-05-14",
    ]
    last_weekday = {
        "type": "relativeMonthly",
        "daysOfWeek": ["monday", "tuesday", "wednesday", "thursday", "friday"],
        "index": "last",
    }
    assert _dates(last_weekday, rng, "2024-03-01") == ["2024-01-31", "2024-02-29"]
    yearly = {"type": "absoluteYearly", "month": 2, "dayOfMonth": 29}
    assert _dates(yearly, {"type": "noEnd", "startDate": "2024-01-01"}, "2026-12-31") == [
        "2024-02-29",
        "2025-02-28",
        "2026-02-28",
    ]
    thanksgiving = {
        "type": "relativeYearly",
        "month": 11,
        "daysOfWeek": ["thursday"],
        "index": "fourth",
    }
    assert _dates(thanksgiving, {"type": "noEnd", "startDate": "2024-01-01"}, "2025-12-31") == [
        "2024-11-28",
        "2025-11-27",
    ]


@pytest.mark.parametrize(
    "value",
    [
        {"pattern": {"type": "hourly"}, "range": {"type": "noEnd", "startDate": "2024-01-01"}},
        {"pattern": {"type": "weekly"}, "range": {"type": "noEnd", "startDate": "2024-01-01"}},
        {"pattern": {"type": "daily"}, "range": {"type": "numbered", "startDate": "2024-01-01"}},
        {"pattern": {"type": "daily", "interval": 0}, "range": {"type": "noEnd"}},
        {"pattern": {"type": "daily", "bogus": 1}, "range": {"type": "noEnd"}},
    ],
)
def test_invalid_recurrence_is_rejected(value: dict[str, Any]) -> None:
    with pytest.raises(GraphError) as raised:
        normalize(value, None)
    assert raised.value.status == 400


def _event(subject: str, start: str, end: str, zone: str, **extra: Any) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": start, "timeZone": zone},
        "end": {"dateTime": end, "timeZone": zone},
        **extra,
    }


async def _view(
    graph: httpx.AsyncClient, setup: Setup, start: str, end: str, **headers: str
) -> list[dict[str, Any]]:
    response = await graph.get(
        f"/v1.0/users/{setup.max_id}/calendarView",
        params={"startDateTime": start, "endDateTime": end, "$top": "100"},
        headers=headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert_valid(body, "x-synth.eventCollectionResponse")
    for item in body["value"]:
        assert_event(item)
    return list(body["value"])


async def test_weekly_series_across_dst_in_calendar_view(
    graph: httpx.AsyncClient, setup: Setup
) -> None:
    weekly = _event(
        "Standup",
        "2024-03-18T09:00:00",
        "2024-03-18T09:30:00",
        BERLIN,
        recurrence={
            "pattern": {"type": "weekly", "interval": 1, "daysOfWeek": ["Monday"]},
            "range": {"type": "noEnd", "startDate": "2024-03-18"},
        },
    )
    created = await graph.post(f"/v1.0/users/{setup.max_id}/events", json=weekly)
    assert created.status_code == 201, created.text
    master = created.json()
    assert_event(master)
    assert master["type"] == "seriesMaster"
    assert master["recurrence"]["pattern"]["firstDayOfWeek"] == "sunday"
    assert master["recurrence"]["range"]["recurrenceTimeZone"] == BERLIN
    single = _event("Lunch", "2024-03-26T12:00:00", "2024-03-26T13:00:00", "UTC")
    assert (await graph.post(f"/v1.0/users/{setup.max_id}/events", json=single)).status_code == 201

    utc = await _view(graph, setup, "2024-03-17T00:00:00Z", "2024-04-09T00:00:00Z")
    assert [(e["subject"], e["start"]["dateTime"]) for e in utc] == [
        ("Standup", "2024-03-18T08:00:00.0000000"),
        ("Standup", "2024-03-25T08:00:00.0000000"),
        ("Lunch", "2024-03-26T12:00:00.0000000"),
        # Berlin switched to summer time on 2024-03-31: same wall time, an hour earlier in UTC.
        ("Standup", "2024-04-01T07:00:00.0000000"),
        ("Standup", "2024-04-08T07:00:00.0000000"),
    ]
    occurrences = [e for e in utc if e["subject"] == "Standup"]
    assert all(e["type"] == "occurrence" for e in occurrences)
    assert all(e["seriesMasterId"] == master["id"] for e in occurrences)
    assert all(e["recurrence"] is None for e in occurrences)
    assert len({e["id"] for e in occurrences}) == 4 and master["id"] not in {e["id"] for e in utc}
    uids = {e["iCalUId"] for e in occurrences}
    assert len(uids) == 4 and master["iCalUId"] not in uids
    assert all(uid[:32] == master["iCalUId"][:32] for uid in uids)
    assert utc[2]["type"] == "singleInstance"

    local = await _view(
        graph,
        setup,
        "2024-03-17T00:00:00Z",
        "2024-04-09T00:00:00Z",
        Prefer=f'outlook.timezone="{BERLIN}"',
    )
    standups = [e for e in local if e["subject"] == "Standup"]
    assert {e["start"]["dateTime"][11:] for e in standups} == {"09:00:00.0000000"}
    assert {e["end"]["timeZone"] for e in standups} == {BERLIN}
    # Ids stay the same whichever zone the client reads in.
    assert [e["id"] for e in standups] == [e["id"] for e in occurrences]


async def test_daily_count_and_window_edges(graph: httpx.AsyncClient, setup: Setup) -> None:
    daily = _event(
        "Pills",
        "2024-05-01T08:00:00",
        "2024-05-01T08:15:00",
        "UTC",
        recurrence={
            "pattern": {"type": "daily", "interval": 1},
            "range": {"type": "numbered", "startDate": "2024-05-01", "numberOfOccurrences": 5},
        },
    )
    assert (await graph.post(f"/v1.0/users/{setup.max_id}/events", json=daily)).status_code == 201
    everything = await _view(graph, setup, "2024-04-01T00:00:00Z", "2024-06-01T00:00:00Z")
    assert [e["start"]["dateTime"][:10] for e in everything] == [
        "2024-05-01",
        "2024-05-02",
        "2024-05-03",
        "2024-05-04",
        "2024-05-05",
    ]
    # An occurrence overlapping the window's edge is in; one ending at its start is not.
    edge = await _view(graph, setup, "2024-05-02T08:10:00Z", "2024-05-03T08:00:00Z")
    assert [e["start"]["dateTime"][:10] for e in edge] == ["2024-05-02"]


async def test_bad_recurrence_over_http(graph: httpx.AsyncClient, setup: Setup) -> None:
    body = _event(
        "Broken",
        "2024-05-01T08:00:00",
        "2024-05-01T09:00:00",
        "UTC",
        recurrence={"pattern": {"type": "fortnightly"}, "range": {"type": "noEnd"}},
    )
    response = await graph.post(f"/v1.0/users/{setup.max_id}/events", json=body)
    assert response.status_code == 400
    assert_graph_error(response.json())
