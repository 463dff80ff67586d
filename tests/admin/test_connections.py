"""Connections through the admin API: create, update, read, list, delete; secrets at rest."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from sqlalchemy import select, text

from app.crypto import SecretBox
from app.db import Database
from app.models import Connection, Employee, SyncRecord
from app.models.base import UTCDateTime
from tests.admin.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    ORG,
    TENANT_ID,
    connection_body,
    raw_rows,
)
from tests.helpers import assert_problem

URL = f"/api/v1/connections/{ORG}"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
WHSEC = re.compile(r"whsec_[A-Za-z0-9+/]+={0,2}")
OUT_FIELDS = {
    "organization_id",
    "tenant",
    "client_id",
    "client_secret_expires_at",
    "secret_state",
    "secret_days_left",
    "locale",
    "event_settings",
    "webhook_url",
    "previous_webhook_secret_expires_at",
    "employee_count",
    "bookingtime_api",
    "created_at",
    "updated_at",
}


def as_utc(value: Any) -> datetime:
    """A raw datetime column value as aware UTC (SQLite stores it without an offset)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


async def stored_connection(database: Database) -> dict[str, Any]:
    rows = await raw_rows(database, "SELECT * FROM connection")
    assert len(rows) == 1
    return rows[0]


async def test_create_returns_201_and_a_generated_webhook_secret_once(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    secret_box: SecretBox,
) -> None:
    response = await client.put(
        URL, json=connection_body(client_secret_expires_at="2027-05-31"), headers=admin_headers
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert set(body) == OUT_FIELDS | {"webhook_secret"}
    assert body["organization_id"] == ORG
    assert body["tenant"] == TENANT_ID
    assert body["client_id"] == CLIENT_ID
    assert body["locale"] == "de"
    assert body["employee_count"] == 0
    assert body["webhook_url"] == f"/webhooks/bookingtime/{ORG}"
    assert as_utc(body["client_secret_expires_at"]) == datetime(2027, 5, 31, tzinfo=UTC)
    assert body["created_at"] == body["updated_at"]
    assert "client_secret" not in body

    secret = body["webhook_secret"]
    assert WHSEC.fullmatch(secret)
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32

    row = await stored_connection(database)
    assert secret_box.decrypt(row["webhook_secret_encrypted"]) == secret
    assert secret_box.decrypt(row["client_secret_encrypted"]) == CLIENT_SECRET

    # Shown once: neither a read nor the list nor an update repeats it.
    got = await client.get(URL, headers=admin_headers)
    assert got.status_code == 200
    assert set(got.json()) == OUT_FIELDS
    assert secret not in got.text
    listed = await client.get("/api/v1/connections", headers=admin_headers)
    assert secret not in listed.text
    updated = await client.put(URL, json=connection_body(), headers=admin_headers)
    assert updated.status_code == 200
    assert updated.json()["webhook_secret"] is None
    assert secret_box.decrypt((await stored_connection(database))["webhook_secret_encrypted"]) == (
        secret
    )


async def test_secrets_are_encrypted_at_rest(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    secret_box: SecretBox,
) -> None:
    response = await client.put(
        URL, json=connection_body(webhook_secret=WEBHOOK_SECRET), headers=admin_headers
    )
    assert response.status_code == 201
    assert response.json()["webhook_secret"] is None
    assert CLIENT_SECRET not in response.text and WEBHOOK_SECRET not in response.text

    row = await stored_connection(database)
    webhook_key = WEBHOOK_SECRET.removeprefix("whsec_")
    for column, value in row.items():
        for plain in (CLIENT_SECRET, WEBHOOK_SECRET, webhook_key):
            assert plain not in str(value), column
    assert secret_box.decrypt(row["client_secret_encrypted"]) == CLIENT_SECRET
    assert secret_box.decrypt(row["webhook_secret_encrypted"]) == WEBHOOK_SECRET
    assert row["client_secret_encrypted"] != row["webhook_secret_encrypted"]


async def test_update_without_secrets_keeps_them(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    secret_box: SecretBox,
) -> None:
    await client.put(
        URL,
        json=connection_body(
            webhook_secret=WEBHOOK_SECRET,
            client_secret_expires_at="2027-05-31T12:00:00+02:00",
            locale="en",
        ),
        headers=admin_headers,
    )
    before = await stored_connection(database)

    response = await client.put(
        URL,
        json={
            "tenant": "https://login.microsoftonline.com/Contoso.com/v2.0",
            "client_id": CLIENT_ID,
        },
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["tenant"] == "contoso.com"
    assert body["locale"] == "en"
    assert as_utc(body["client_secret_expires_at"]) == datetime(2027, 5, 31, 10, tzinfo=UTC)
    assert body["webhook_secret"] is None

    after = await stored_connection(database)
    assert after["id"] == before["id"]
    assert after["tenant"] == "contoso.com"
    # Unchanged ciphertext: a kept secret is not even re-encrypted.
    assert after["client_secret_encrypted"] == before["client_secret_encrypted"]
    assert after["webhook_secret_encrypted"] == before["webhook_secret_encrypted"]
    assert secret_box.decrypt(after["client_secret_encrypted"]) == CLIENT_SECRET
    assert secret_box.decrypt(after["webhook_secret_encrypted"]) == WEBHOOK_SECRET
    assert as_utc(after["updated_at"]) > as_utc(before["updated_at"])
    assert as_utc(after["created_at"]) == as_utc(before["created_at"])


async def test_update_replaces_secrets_and_expiry_rules(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    secret_box: SecretBox,
) -> None:
    await client.put(
        URL, json=connection_body(client_secret_expires_at="2027-05-31"), headers=admin_headers
    )

    # The same client secret again: the expiry still describes it.
    same = await client.put(URL, json=connection_body(), headers=admin_headers)
    assert same.json()["client_secret_expires_at"] is not None

    # A new client secret is verified against Entra first: that, and that its stored date is
    # dropped with the old secret, is in tests/connections/test_secret_lifecycle.py (sandbox).
    rotated = await client.put(
        URL, json=connection_body(webhook_secret=WEBHOOK_SECRET), headers=admin_headers
    )
    assert rotated.status_code == 200
    row = await stored_connection(database)
    assert secret_box.decrypt(row["webhook_secret_encrypted"]) == WEBHOOK_SECRET

    # A new expiry alone, then an explicit null clears it.
    dated = await client.put(
        URL,
        json={
            "tenant": TENANT_ID,
            "client_id": CLIENT_ID,
            "client_secret_expires_at": "2028-01-01",
        },
        headers=admin_headers,
    )
    assert as_utc(dated.json()["client_secret_expires_at"]) == datetime(2028, 1, 1, tzinfo=UTC)
    cleared = await client.put(
        URL,
        json={"tenant": TENANT_ID, "client_id": CLIENT_ID, "client_secret_expires_at": None},
        headers=admin_headers,
    )
    assert cleared.json()["client_secret_expires_at"] is None


async def test_secret_under_a_lost_key_can_be_replaced(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    secret_box: SecretBox,
) -> None:
    await client.put(URL, json=connection_body(), headers=admin_headers)
    lost = SecretBox([base64.urlsafe_b64encode(b"0" * 32)])
    async with database.session_scope() as session:
        await session.execute(
            text("UPDATE connection SET client_secret_encrypted = :token"),
            {"token": lost.encrypt(CLIENT_SECRET)},
        )
    response = await client.put(URL, json=connection_body(), headers=admin_headers)
    assert response.status_code == 200
    row = await stored_connection(database)
    assert secret_box.decrypt(row["client_secret_encrypted"]) == CLIENT_SECRET


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"client_secret": ...}, "client_secret"),
        ({"client_secret": ""}, "client_secret"),
        ({"client_secret": "   "}, "client_secret"),
        ({"client_secret": "x" * 1025}, "client_secret"),
        ({"client_id": "not-a-guid"}, "client_id"),
        ({"client_id": ...}, "client_id"),
        ({"tenant": ...}, "tenant"),
        ({"tenant": "common"}, "tenant"),
        ({"tenant": "https://evil.example/contoso.com"}, "tenant"),
        ({"client_secret_expires_at": "2027-05-31T12:00:00"}, "client_secret_expires_at"),
        ({"client_secret_expires_at": "tomorrow"}, "client_secret_expires_at"),
        ({"webhook_secret": "secret"}, "webhook_secret"),
        ({"webhook_secret": "whsec_" + base64.b64encode(b"k" * 16).decode()}, "webhook_secret"),
        ({"locale": "fr"}, "locale"),
        ({"clientSecret": "typo"}, "clientSecret"),
    ],
)
async def test_invalid_create_is_422_naming_the_field_and_stores_nothing(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    overrides: dict[str, Any],
    field: str,
) -> None:
    response = await client.put(URL, json=connection_body(**overrides), headers=admin_headers)
    body = assert_problem(response, 422, "validation_failed")
    assert field in {error["field"] for error in body["errors"]}
    assert field in body["detail"] or field == "tenant"
    assert CLIENT_SECRET not in response.text
    assert await raw_rows(database, "SELECT id FROM connection") == []


async def test_invalid_tenant_detail_explains_the_accepted_forms(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.put(URL, json=connection_body(tenant="common"), headers=admin_headers)
    body = assert_problem(response, 422, "validation_failed")
    assert "multi-tenant" in body["detail"]
    for form in ("GUID", "contoso.onmicrosoft.com", "https://login.microsoftonline.com/<"):
        assert form in body["detail"]
    assert body["errors"] == [{"field": "tenant", "message": body["errors"][0]["message"]}]


async def test_invalid_update_keeps_the_stored_connection(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    connection: dict[str, Any],
) -> None:
    before = await stored_connection(database)
    response = await client.put(
        URL, json=connection_body(tenant="organizations", locale="en"), headers=admin_headers
    )
    assert_problem(response, 422, "validation_failed")
    assert await stored_connection(database) == before


@pytest.mark.parametrize("organization_id", ["a" * 65, "f6.x", "f6%20x", "f6~x", "%C3%A4"])
async def test_bad_organization_id_is_422(
    client: httpx.AsyncClient, admin_headers: dict[str, str], organization_id: str
) -> None:
    response = await client.put(
        f"/api/v1/connections/{organization_id}", json=connection_body(), headers=admin_headers
    )
    body = assert_problem(response, 422, "validation_failed")
    assert "organization_id" in body["detail"]


async def test_longest_organization_id_is_accepted(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    organization_id = "A-z_0" + "9" * 59
    response = await client.put(
        f"/api/v1/connections/{organization_id}", json=connection_body(), headers=admin_headers
    )
    assert response.status_code == 201
    assert response.json()["organization_id"] == organization_id


async def test_get_and_list(
    client: httpx.AsyncClient, admin_headers: dict[str, str], database: Database
) -> None:
    for organization_id, tenant in [("f6ccc", "c.example.com"), ("f6aaa", TENANT_ID.upper())]:
        response = await client.put(
            f"/api/v1/connections/{organization_id}",
            json=connection_body(tenant=tenant, locale="en"),
            headers=admin_headers,
        )
        assert response.status_code == 201
    async with database.session_scope() as session:
        connection_id = await session.scalar(
            select(Connection.id).where(Connection.organization_id == "f6aaa")
        )
        assert connection_id is not None
        for resource in ("br1", "br2"):
            session.add(
                Employee(
                    connection_id=connection_id, booking_resource_id=resource, mailbox="a@b.de"
                )
            )

    listed = await client.get("/api/v1/connections", headers=admin_headers)
    assert listed.status_code == 200
    items = listed.json()
    assert [item["organization_id"] for item in items] == ["f6aaa", "f6ccc"]
    assert [item["employee_count"] for item in items] == [2, 0]
    assert items[0]["tenant"] == TENANT_ID
    assert all(set(item) == OUT_FIELDS for item in items)

    got = await client.get("/api/v1/connections/f6aaa", headers=admin_headers)
    assert got.json() == items[0]


async def test_get_missing_is_404(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> None:
    response = await client.get(URL, headers=admin_headers)
    body = assert_problem(response, 404, "connection_not_found")
    assert ORG in body["detail"]


async def test_delete_cascades(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    connection: dict[str, Any],
) -> None:
    employee = await client.put(
        f"{URL}/employees/br1", json={"mailbox": "max@contoso.com"}, headers=admin_headers
    )
    assert employee.status_code == 201
    other = await client.put(
        "/api/v1/connections/f6other", json=connection_body(), headers=admin_headers
    )
    assert other.status_code == 201
    async with database.session_scope() as session:
        connection_id = await session.scalar(
            text("SELECT id FROM connection WHERE organization_id = :o"), {"o": ORG}
        )
        session.add(
            SyncRecord(
                connection_id=connection_id,
                action="create",
                status="succeeded",
                code="ok",
                message="ok",
            )
        )

    response = await client.delete(URL, headers=admin_headers)
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await client.get(URL, headers=admin_headers), 404, "connection_not_found")
    assert [r["organization_id"] for r in await raw_rows(database, "SELECT * FROM connection")] == [
        "f6other"
    ]
    assert await raw_rows(database, "SELECT id FROM employee") == []
    assert await raw_rows(database, "SELECT id FROM sync_record") == []

    again = await client.delete(URL, headers=admin_headers)
    assert_problem(again, 404, "connection_not_found")


def test_utc_datetime_type_is_used_for_expiry() -> None:
    # The expiry round-trips as aware UTC only because the column uses UTCDateTime.
    assert isinstance(Connection.__table__.c.client_secret_expires_at.type, UTCDateTime)
