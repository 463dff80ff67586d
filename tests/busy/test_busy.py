"""The busy API: merging, raw blocks, UTC output, range validation and 404s, on SQLite and
PostgreSQL (blocks stored directly; tests/busy/test_delta.py fills them from the sandbox)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from app.db import Database
from app.models import BusyBlock, CalendarSync, Employee
from tests.conftest import bare_connection
from tests.helpers import assert_problem

ORG = "orgBusy"
EMPLOYEE = "brBusy"
MAILBOX = "Anna@Contoso.example"
URL = f"/api/v1/connections/{ORG}/employees/{EMPLOYEE}/busy"


def at(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 6, day, hour, minute, tzinfo=UTC)


@pytest.fixture
async def seeded(database: Database) -> None:
    """Blocks of Anna's mailbox (stored under its case-folded address) and one of another
    connection's mailbox with the same address."""
    async with database.session_scope() as session:
        connection, other = bare_connection(ORG), bare_connection("orgOther")
        session.add_all([connection, other])
        await session.flush()
        session.add(
            Employee(connection_id=connection.id, booking_resource_id=EMPLOYEE, mailbox=MAILBOX)
        )
        key = MAILBOX.casefold()

        def block(event_id: str, start: datetime, end: datetime, **extra: Any) -> BusyBlock:
            return BusyBlock(
                connection_id=extra.pop("connection_id", connection.id),
                mailbox=key,
                graph_event_id=event_id,
                start_at=start,
                end_at=end,
                show_as=extra.pop("show_as", "busy"),
                is_all_day=extra.pop("is_all_day", False),
                subject=extra.pop("subject", None),
            )

        session.add_all(
            [
                block("a", at(2, 9), at(2, 10), subject="Planning"),
                block("b", at(2, 10), at(2, 11), show_as="tentative"),  # touches a
                block("c", at(2, 10, 30), at(2, 10, 45)),  # inside b
                block("d", at(2, 13), at(2, 14), show_as="oof"),
                block("e", at(3, 0), at(4, 0), is_all_day=True),
                block("f", at(1, 22), at(2, 1)),  # starts before the range
                block("g", at(5, 9), at(5, 10)),  # after the range
                block("h", at(2, 15), at(2, 16), connection_id=other.id),
            ]
        )
        session.add(
            CalendarSync(connection_id=connection.id, mailbox=key, last_synced_at=at(2, 7, 59))
        )


async def get(client: httpx.AsyncClient, headers: dict[str, str], **params: str) -> httpx.Response:
    query = {"start": "2025-06-02T00:00:00Z", "end": "2025-06-04T00:00:00Z", **params}
    return await client.get(URL, params=query, headers=headers)


@pytest.mark.usefixtures("seeded")
async def test_merged_intervals_in_utc(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await get(client, admin_headers)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["merged"] is True and body["mailbox"] == MAILBOX
    assert (body["start"], body["end"]) == ("2025-06-02T00:00:00Z", "2025-06-04T00:00:00Z")
    assert body["synced_at"] == "2025-06-02T07:59:00Z"
    assert body["intervals"] == [
        {"start": "2025-06-01T22:00:00Z", "end": "2025-06-02T01:00:00Z"},
        {"start": "2025-06-02T09:00:00Z", "end": "2025-06-02T11:00:00Z"},
        {"start": "2025-06-02T13:00:00Z", "end": "2025-06-02T14:00:00Z"},
        {"start": "2025-06-03T00:00:00Z", "end": "2025-06-04T00:00:00Z"},
    ]


@pytest.mark.usefixtures("seeded")
async def test_raw_blocks_with_show_as_and_stored_subjects(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    # An offset in the query is read as the instant it names.
    response = await get(client, admin_headers, merge="false", start="2025-06-02T11:00:00+02:00")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["merged"] is False and body["start"] == "2025-06-02T09:00:00Z"
    assert body["intervals"] == [
        {
            "start": "2025-06-02T09:00:00Z",
            "end": "2025-06-02T10:00:00Z",
            "showAs": "busy",
            "isAllDay": False,
            "subject": "Planning",
        },
        {
            "start": "2025-06-02T10:00:00Z",
            "end": "2025-06-02T11:00:00Z",
            "showAs": "tentative",
            "isAllDay": False,
        },
        {
            "start": "2025-06-02T10:30:00Z",
            "end": "2025-06-02T10:45:00Z",
            "showAs": "busy",
            "isAllDay": False,
        },
        {
            "start": "2025-06-02T13:00:00Z",
            "end": "2025-06-02T14:00:00Z",
            "showAs": "oof",
            "isAllDay": False,
        },
        {
            "start": "2025-06-03T00:00:00Z",
            "end": "2025-06-04T00:00:00Z",
            "showAs": "busy",
            "isAllDay": True,
        },
    ]


@pytest.mark.usefixtures("seeded")
@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"start": "2025-06-02T00:00:00"}, "start"),
        ({"end": "2025-06-04T00:00:00"}, "end"),
        ({"end": "2025-06-02T00:00:00Z"}, "end"),
        ({"end": "2025-06-01T00:00:00Z"}, "end"),
        ({"end": "2026-06-04T00:00:00Z"}, "end"),
        ({"start": "tomorrow"}, "start"),
        ({"merge": "maybe"}, "merge"),
    ],
)
async def test_invalid_ranges_are_422_naming_the_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str], params: dict[str, str], field: str
) -> None:
    response = await get(client, admin_headers, **params)
    problem = assert_problem(response, 422, "validation_failed")
    assert field in [error["field"] for error in problem["errors"]]


@pytest.mark.usefixtures("seeded")
async def test_missing_bounds_are_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.get(URL, headers=admin_headers)
    assert response.status_code == 422
    assert {e["field"] for e in response.json()["errors"]} == {"start", "end"}


@pytest.mark.usefixtures("seeded")
async def test_a_year_is_the_longest_range(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await get(
        client, admin_headers, start="2025-06-01T00:00:00Z", end="2026-06-02T00:00:00Z"
    )
    assert response.status_code == 200, response.text


@pytest.mark.usefixtures("seeded")
async def test_unknown_connection_and_employee_are_404(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    params = {"start": "2025-06-02T00:00:00Z", "end": "2025-06-04T00:00:00Z"}
    response = await client.get(
        f"/api/v1/connections/nobody/employees/{EMPLOYEE}/busy",
        params=params,
        headers=admin_headers,
    )
    assert_problem(response, 404, "connection_not_found")
    response = await client.get(
        f"/api/v1/connections/{ORG}/employees/brNobody/busy", params=params, headers=admin_headers
    )
    assert_problem(response, 404, "employee_not_found")


@pytest.mark.usefixtures("seeded")
async def test_the_busy_api_needs_the_admin_token(client: httpx.AsyncClient) -> None:
    response = await client.get(
        URL, params={"start": "2025-06-02T00:00:00Z", "end": "2025-06-04T00:00:00Z"}
    )
    assert response.status_code == 401


async def test_the_busy_api_is_documented(client: httpx.AsyncClient) -> None:
    document = (await client.get("/openapi.json")).json()
    operation = document["paths"][
        "/api/v1/connections/{organization_id}/employees/{employee_id}/busy"
    ]["get"]
    assert operation["summary"] and operation["description"]
    assert {"401", "404", "422"} <= set(operation["responses"])
    assert {p["name"] for p in operation["parameters"]} >= {"start", "end", "merge"}
    schemas = document["components"]["schemas"]
    assert schemas["BusyOut"]["examples"] and schemas["BusyInterval"]["examples"]
