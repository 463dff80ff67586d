"""Sync history through the admin API: filters, newest-first order, cursor pagination."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

import app
from app.admin.pagination import encode_cursor
from app.db import Database
from app.history.schemas import SYNC_STATUSES
from app.models import Connection, SyncRecord
from tests.admin.conftest import ORG, connection_body
from tests.helpers import assert_problem

URL = "/api/v1/sync-history"
OTHER = "f6other"
START = datetime(2026, 11, 26, 8, tzinfo=UTC)
OUT_FIELDS = {
    "id",
    "organization_id",
    "employee_id",
    "mailbox",
    "appointment_id",
    "job_id",
    "action",
    "status",
    "code",
    "message",
    "details",
    "duration_ms",
    "graph_request_id",
    "created_at",
}


@pytest.fixture
async def records(
    client: httpx.AsyncClient, admin_headers: dict[str, str], database: Database
) -> list[int]:
    """Seven records over two connections, inserted oldest first; returns their ids in order."""
    for organization_id in (ORG, OTHER):
        response = await client.put(
            f"/api/v1/connections/{organization_id}", json=connection_body(), headers=admin_headers
        )
        assert response.status_code == 201
    plan = [
        (ORG, "br1", "success"),
        (ORG, "br2", "failed"),
        (OTHER, "br9", "success"),
        (ORG, "br1", "failed"),
        (ORG, None, "skipped"),
        (OTHER, "br9", "failed"),
        (ORG, "br1", "success"),
    ]
    async with database.session_scope() as session:
        result = await session.execute(select(Connection.organization_id, Connection.id))
        ids = {row.organization_id: row.id for row in result}
        rows = [
            SyncRecord(
                connection_id=ids[organization_id],
                booking_resource_id=employee,
                mailbox=None if employee is None else f"{employee}@contoso.com",
                appointment_id=f"ed{n}",
                job_id=100 + n,
                action="create",
                status=status,
                code="ok" if status == "success" else "mailbox_not_found",
                message=f"record {n}",
                details={"n": n, "graph": {"status": 404}} if status == "failed" else None,
                duration_ms=10 * n,
                graph_request_id=f"req-{n}",
                created_at=START + timedelta(minutes=n),
            )
            for n, (organization_id, employee, status) in enumerate(plan)
        ]
        for row in rows:
            session.add(row)
            await session.flush()
        return [row.id for row in rows]


async def fetch(
    client: httpx.AsyncClient, headers: dict[str, str], **params: Any
) -> dict[str, Any]:
    response = await client.get(URL, params=params, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


async def test_empty(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    assert await fetch(client, admin_headers) == {"items": [], "next_cursor": None}


async def test_newest_first_with_every_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str], records: list[int]
) -> None:
    page = await fetch(client, admin_headers)
    assert page["next_cursor"] is None
    items = page["items"]
    assert [item["id"] for item in items] == records[::-1]
    newest = items[0]
    assert set(newest) == OUT_FIELDS
    assert newest == {
        "id": records[6],
        "organization_id": ORG,
        "employee_id": "br1",
        "mailbox": "br1@contoso.com",
        "appointment_id": "ed6",
        "job_id": 106,
        "action": "create",
        "status": "success",
        "code": "ok",
        "message": "record 6",
        "details": None,
        "duration_ms": 60,
        "graph_request_id": "req-6",
        "created_at": newest["created_at"],
    }
    assert datetime.fromisoformat(newest["created_at"]) == START + timedelta(minutes=6)
    failed = next(item for item in items if item["id"] == records[5])
    assert failed["organization_id"] == OTHER
    assert failed["details"] == {"n": 5, "graph": {"status": 404}}
    assert next(item for item in items if item["id"] == records[4])["employee_id"] is None


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"organization_id": ORG}, [6, 4, 3, 1, 0]),
        ({"organization_id": OTHER}, [5, 2]),
        ({"employee_id": "br1"}, [6, 3, 0]),
        ({"employee_id": "br9"}, [5, 2]),
        ({"status": "failed"}, [5, 3, 1]),
        ({"organization_id": ORG, "status": "failed"}, [3, 1]),
        ({"organization_id": ORG, "employee_id": "br1", "status": "success"}, [6, 0]),
        ({"organization_id": OTHER, "employee_id": "br1"}, []),
        ({"employee_id": "nobody"}, []),
        ({"status": "conflict"}, []),
        ({"appointment_id": "ed3"}, [3]),
        ({"appointment_id": "ed3", "organization_id": ORG, "status": "failed"}, [3]),
        ({"appointment_id": "ed3", "organization_id": OTHER}, []),
        ({"appointment_id": "ed3", "status": "success"}, []),
        ({"appointment_id": "nobody"}, []),
    ],
)
async def test_filters(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    records: list[int],
    params: dict[str, str],
    expected: list[int],
) -> None:
    page = await fetch(client, admin_headers, **params)
    assert [item["id"] for item in page["items"]] == [records[n] for n in expected]
    assert page["next_cursor"] is None


async def test_pages_cover_everything_once(
    client: httpx.AsyncClient, admin_headers: dict[str, str], records: list[int]
) -> None:
    seen: list[int] = []
    sizes: list[int] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 3}
        if cursor is not None:
            params["cursor"] = cursor
        page = await fetch(client, admin_headers, **params)
        seen += [item["id"] for item in page["items"]]
        sizes.append(len(page["items"]))
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == records[::-1]
    assert sizes == [3, 3, 1]


async def test_exact_last_page_has_no_cursor(
    client: httpx.AsyncClient, admin_headers: dict[str, str], records: list[int]
) -> None:
    first = await fetch(client, admin_headers, organization_id=OTHER, limit=1)
    assert [item["id"] for item in first["items"]] == [records[5]]
    assert first["next_cursor"] is not None
    second = await fetch(
        client, admin_headers, organization_id=OTHER, limit=1, cursor=first["next_cursor"]
    )
    assert [item["id"] for item in second["items"]] == [records[2]]
    assert second["next_cursor"] is None


async def test_filtered_pages_and_new_records_do_not_shift_pages(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    records: list[int],
) -> None:
    first = await fetch(client, admin_headers, status="failed", limit=2)
    assert [item["id"] for item in first["items"]] == [records[5], records[3]]
    # A record written between pages lands on no later page: the cursor is an id, not an offset.
    async with database.session_scope() as session:
        connection_id = await session.scalar(
            select(Connection.id).where(Connection.organization_id == ORG)
        )
        assert connection_id is not None
        session.add(
            SyncRecord(
                connection_id=connection_id,
                action="delete",
                status="failed",
                code="x",
                message="later",
            )
        )
    second = await fetch(
        client, admin_headers, status="failed", limit=2, cursor=first["next_cursor"]
    )
    assert [item["id"] for item in second["items"]] == [records[1]]
    assert second["next_cursor"] is None
    # A cursor from any id works too.
    resumed = await fetch(client, admin_headers, cursor=encode_cursor(records[2]))
    assert [item["id"] for item in resumed["items"]] == [records[1], records[0]]


@pytest.mark.parametrize("cursor", ["garbage!", "aWQ6eA", "bm9wZTox", "", "%%%"])
async def test_bad_cursor_is_400(
    client: httpx.AsyncClient, admin_headers: dict[str, str], cursor: str
) -> None:
    response = await client.get(URL, params={"cursor": cursor}, headers=admin_headers)
    assert_problem(response, 400, "invalid_cursor")


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"organization_id": "f6.x"}, "organization_id"),
        ({"employee_id": "b" * 65}, "employee_id"),
        ({"status": "s" * 17}, "status"),
        # Only the outcomes records have: a typo is an error, not an empty page.
        ({"status": "unknown"}, "status"),
        ({"status": "succeeded"}, "status"),
        ({"status": "FAILED"}, "status"),
        ({"status": ""}, "status"),
        ({"appointment_id": ""}, "appointment_id"),
        ({"appointment_id": "e" * 65}, "appointment_id"),
    ],
)
async def test_bad_query_is_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str], params: dict[str, Any], field: str
) -> None:
    response = await client.get(URL, params=params, headers=admin_headers)
    body = assert_problem(response, 422, "validation_failed")
    assert body["detail"] == f"invalid or missing: {field}"


async def test_unknown_organization_is_404(
    client: httpx.AsyncClient, admin_headers: dict[str, str], records: list[int]
) -> None:
    response = await client.get(URL, params={"organization_id": "f6nobody"}, headers=admin_headers)
    assert_problem(response, 404, "connection_not_found")


async def test_default_limit_is_50(
    client: httpx.AsyncClient, admin_headers: dict[str, str], database: Database
) -> None:
    await client.put(f"/api/v1/connections/{ORG}", json=connection_body(), headers=admin_headers)
    async with database.session_scope() as session:
        connection_id = await session.scalar(select(Connection.id))
        assert connection_id is not None
        session.add_all(
            SyncRecord(
                connection_id=connection_id,
                action="create",
                status="succeeded",
                code="ok",
                message=str(n),
            )
            for n in range(51)
        )
    page = await fetch(client, admin_headers)
    assert len(page["items"]) == 50
    assert [item["message"] for item in page["items"]][:2] == ["50", "49"]
    rest = await fetch(client, admin_headers, cursor=page["next_cursor"])
    assert [item["message"] for item in rest["items"]] == ["0"]


async def test_unknown_status_is_422_naming_the_valid_ones(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.get(URL, params={"status": "succeeded"}, headers=admin_headers)
    body = assert_problem(response, 422, "validation_failed")
    [error] = body["errors"]
    assert error["field"] == "status"
    assert all(f"'{status}'" in error["message"] for status in SYNC_STATUSES)


async def test_status_filter_is_an_enum_in_the_openapi_document(
    client: httpx.AsyncClient,
) -> None:
    document = (await client.get("/openapi.json")).json()
    parameters = {
        parameter["name"]: parameter for parameter in document["paths"][URL]["get"]["parameters"]
    }
    [enum] = [
        choice["enum"] for choice in parameters["status"]["schema"]["anyOf"] if "enum" in choice
    ]
    assert set(enum) == SYNC_STATUSES
    appointment = parameters["appointment_id"]
    assert appointment["required"] is False
    [text] = [choice for choice in appointment["schema"]["anyOf"] if choice["type"] == "string"]
    assert (text["minLength"], text["maxLength"]) == (1, 64)


def _written_statuses() -> set[str]:
    """Every literal `status=` the code passes where it writes a sync history record."""
    writers = {"SyncRecord", "add_record", "add_records", "_record"}
    found: set[str] = set()
    for path in Path(app.__file__).parent.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", None) or getattr(node.func, "attr", None)
            if name not in writers:
                continue
            for keyword in node.keywords:
                if keyword.arg == "status":
                    found |= {
                        value.value
                        for value in ast.walk(keyword.value)
                        if isinstance(value, ast.Constant) and isinstance(value.value, str)
                    }
    return found


def test_every_status_the_code_writes_can_be_filtered_for() -> None:
    """A new outcome written without joining `SyncStatus` could never be asked for."""
    written = _written_statuses()
    assert {"success", "skipped", "failed", "error"} <= written  # the scan finds the writers
    assert written <= SYNC_STATUSES


async def test_appointment_filter_pages_through_one_appointments_attempts(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    records: list[int],
) -> None:
    async with database.session_scope() as session:
        connection_id = await session.scalar(
            select(Connection.id).where(Connection.organization_id == ORG)
        )
        assert connection_id is not None
        retries = [
            SyncRecord(
                connection_id=connection_id,
                appointment_id="ed3",
                action="update",
                status=status,
                code="x",
                message=f"retry {n}",
            )
            for n, status in enumerate(["retrying", "retrying", "success"])
        ]
        for row in retries:
            session.add(row)
            await session.flush()
        later = [row.id for row in retries]
    first = await fetch(client, admin_headers, appointment_id="ed3", limit=2)
    assert [item["id"] for item in first["items"]] == [later[2], later[1]]
    assert {item["appointment_id"] for item in first["items"]} == {"ed3"}
    rest = await fetch(
        client, admin_headers, appointment_id="ed3", limit=2, cursor=first["next_cursor"]
    )
    assert [item["id"] for item in rest["items"]] == [later[0], records[3]]
    retrying = await fetch(
        client, admin_headers, appointment_id="ed3", organization_id=ORG, status="retrying"
    )
    assert [item["id"] for item in retrying["items"]] == [later[1], later[0]]
