"""Employees through the admin API: mailbox mapping, validation, status fields, 404s."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import update

from app.db import Database
from app.models import Employee
from tests.admin.conftest import ORG, connection_body, raw_rows
from tests.helpers import assert_problem

BASE = f"/api/v1/connections/{ORG}/employees"
EMPLOYEE = "brAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
URL = f"{BASE}/{EMPLOYEE}"
OUT_FIELDS = {
    "subscription",
    "organization_id",
    "employee_id",
    "mailbox",
    "last_success_at",
    "last_error_at",
    "last_error_code",
    "last_error_message",
    "created_at",
    "updated_at",
}


async def set_status(database: Database) -> None:
    async with database.session_scope() as session:
        await session.execute(
            update(Employee).values(
                last_success_at=datetime(2026, 11, 1, 8, tzinfo=UTC),
                last_error_at=datetime(2026, 11, 2, 9, tzinfo=UTC),
                last_error_code="mailbox_not_found",
                last_error_message="User max@contoso.com is invalid",
            )
        )


async def test_create_update_get_list_delete(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    connection: dict[str, Any],
) -> None:
    created = await client.put(
        URL, json={"mailbox": "Max.Mustermann@Contoso.COM"}, headers=admin_headers
    )
    assert created.status_code == 201, created.text
    body = created.json()
    assert set(body) == OUT_FIELDS | {"mailbox_check", "backfill_queued"}
    # Microsoft's endpoints are unreachable from the tests: the check is deferred.
    assert body.pop("mailbox_check")["code"] == "check_pending"
    # A new mapping syncs what calbridge already holds (here: nothing) in the background.
    assert body.pop("backfill_queued") is True
    assert body["organization_id"] == ORG
    assert body["employee_id"] == EMPLOYEE
    assert body["mailbox"] == "max.mustermann@contoso.com"
    assert body["last_success_at"] is None and body["last_error_code"] is None
    assert body["created_at"] == body["updated_at"]

    rows = await raw_rows(database, "SELECT * FROM employee")
    assert len(rows) == 1
    assert rows[0]["booking_resource_id"] == EMPLOYEE
    assert rows[0]["mailbox"] == "max.mustermann@contoso.com"
    connection_row = (await raw_rows(database, "SELECT id FROM connection"))[0]
    assert rows[0]["connection_id"] == connection_row["id"]

    got = await client.get(URL, headers=admin_headers)
    assert got.status_code == 200
    assert got.json() == body
    listed = await client.get(BASE, headers=admin_headers)
    assert listed.json() == [body]
    summary = await client.get(f"/api/v1/connections/{ORG}", headers=admin_headers)
    assert summary.json()["employee_count"] == 1

    # The same mailbox again (any case): 200, status kept.
    await set_status(database)
    same = await client.put(
        URL, json={"mailbox": "MAX.mustermann@contoso.com"}, headers=admin_headers
    )
    assert same.status_code == 200
    assert same.json()["last_error_code"] == "mailbox_not_found"
    assert same.json()["last_success_at"].startswith("2026-11-01T08:00:00")

    deleted = await client.delete(URL, headers=admin_headers)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert await raw_rows(database, "SELECT id FROM employee") == []
    assert (await client.get(BASE, headers=admin_headers)).json() == []
    assert_problem(await client.get(URL, headers=admin_headers), 404, "employee_not_found")
    assert_problem(await client.delete(URL, headers=admin_headers), 404, "employee_not_found")


async def test_changing_the_mailbox_clears_the_status(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    connection: dict[str, Any],
) -> None:
    await client.put(URL, json={"mailbox": "max@contoso.com"}, headers=admin_headers)
    await set_status(database)
    with_status = (await client.get(URL, headers=admin_headers)).json()
    assert with_status["last_error_message"] == "User max@contoso.com is invalid"
    assert with_status["last_error_at"].startswith("2026-11-02T09:00:00")

    response = await client.put(
        URL, json={"mailbox": "m.mustermann@contoso.com"}, headers=admin_headers
    )
    assert response.status_code == 200
    body = response.json()
    assert body["mailbox"] == "m.mustermann@contoso.com"
    for field in ("last_success_at", "last_error_at", "last_error_code", "last_error_message"):
        assert body[field] is None
    assert body["updated_at"] > with_status["updated_at"]

    row = (await raw_rows(database, "SELECT * FROM employee"))[0]
    assert row["mailbox"] == "m.mustermann@contoso.com"
    assert row["last_success_at"] is None and row["last_error_code"] is None


@pytest.mark.parametrize(
    "mailbox",
    [
        "",
        "max",
        "max@",
        "@contoso.com",
        "max@@contoso.com",
        "max mustermann@contoso.com",
        "max@localhost",
        None,
        42,
    ],
)
async def test_invalid_mailbox_is_422_naming_mailbox(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    connection: dict[str, Any],
    mailbox: Any,
) -> None:
    response = await client.put(URL, json={"mailbox": mailbox}, headers=admin_headers)
    body = assert_problem(response, 422, "validation_failed")
    assert body["detail"] == "invalid or missing: mailbox"
    assert [error["field"] for error in body["errors"]] == ["mailbox"]
    assert await raw_rows(database, "SELECT id FROM employee") == []


async def test_missing_body_is_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str], connection: dict[str, Any]
) -> None:
    assert_problem(await client.put(URL, headers=admin_headers), 422, "validation_failed")
    response = await client.put(URL, json={"mail": "max@contoso.com"}, headers=admin_headers)
    body = assert_problem(response, 422, "validation_failed")
    assert {error["field"] for error in body["errors"]} == {"mailbox", "mail"}


@pytest.mark.parametrize("employee_id", ["b" * 65, "br.1", "br%20x", "br~x"])
async def test_bad_employee_id_is_422(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    connection: dict[str, Any],
    employee_id: str,
) -> None:
    response = await client.put(
        f"{BASE}/{employee_id}", json={"mailbox": "max@contoso.com"}, headers=admin_headers
    )
    body = assert_problem(response, 422, "validation_failed")
    assert body["detail"] == "invalid or missing: employee_id"


async def test_unknown_connection_is_404(
    client: httpx.AsyncClient, admin_headers: dict[str, str], database: Database
) -> None:
    put = await client.put(URL, json={"mailbox": "max@contoso.com"}, headers=admin_headers)
    assert_problem(put, 404, "connection_not_found")
    assert_problem(await client.get(URL, headers=admin_headers), 404, "connection_not_found")
    assert_problem(await client.get(BASE, headers=admin_headers), 404, "connection_not_found")
    assert_problem(await client.delete(URL, headers=admin_headers), 404, "connection_not_found")
    assert await raw_rows(database, "SELECT id FROM employee") == []


async def test_employee_ids_are_per_connection(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    connection: dict[str, Any],
) -> None:
    other = "f6other"
    assert (
        await client.put(
            f"/api/v1/connections/{other}", json=connection_body(), headers=admin_headers
        )
    ).status_code == 201
    first = await client.put(URL, json={"mailbox": "a@contoso.com"}, headers=admin_headers)
    second = await client.put(
        f"/api/v1/connections/{other}/employees/{EMPLOYEE}",
        json={"mailbox": "b@fabrikam.com"},
        headers=admin_headers,
    )
    assert first.status_code == second.status_code == 201
    assert (await client.get(URL, headers=admin_headers)).json()["mailbox"] == "a@contoso.com"
    for resource in ("br3", "br1", "br2"):
        await client.put(
            f"{BASE}/{resource}", json={"mailbox": f"{resource}@contoso.com"}, headers=admin_headers
        )
    listed = (await client.get(BASE, headers=admin_headers)).json()
    assert [item["employee_id"] for item in listed] == ["br1", "br2", "br3", EMPLOYEE]
    assert len(await raw_rows(database, "SELECT id FROM employee")) == 5
