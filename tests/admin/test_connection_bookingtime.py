"""A connection's `bookingtime_api` settings through the admin API: the secret write-only and
encrypted at rest, kept when omitted with the same client id, `null` turning the connector off."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from app.crypto import SecretBox
from app.db import Database
from tests.admin.conftest import ORG, connection_body, raw_rows
from tests.helpers import assert_problem

URL = f"/api/v1/connections/{ORG}"
BT_SECRET = "bt-secret-0123456789-abcdefghij"
OTHER_SECRET = "bt-other-secret-9876543210-zyxwv"

BOOKINGTIME_COLUMNS = (
    "bookingtime_client_id, bookingtime_client_secret_encrypted, bookingtime_busy_writeback, "
    "bookingtime_busy_exception_type, bookingtime_state, bookingtime_error_code"
)


def bookingtime_api(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "client_id": "app-4711",
        "client_secret": BT_SECRET,
        "busy_writeback": False,
        "busy_exception_type": None,
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not ...}


async def _stored(database: Database) -> dict[str, Any]:
    rows = await raw_rows(
        database,
        f"SELECT {BOOKINGTIME_COLUMNS} FROM connection WHERE organization_id = :org",
        org=ORG,
    )
    return rows[0]


async def test_put_and_get_round_trip_without_the_secret(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    secret_box: SecretBox,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    body = connection_body(
        bookingtime_api=bookingtime_api(busy_writeback=True, busy_exception_type="FREE")
    )
    created = await client.put(URL, json=body, headers=admin_headers)
    assert created.status_code == 201, created.text
    expected = {
        "client_id": "app-4711",
        "busy_writeback": True,
        "busy_exception_type": "FREE",
        "state": "unchecked",
        "checked_at": None,
        "last_poll_at": None,
        "last_error_code": None,
        "last_error_message": None,
    }
    assert created.json()["bookingtime_api"] == expected
    got = await client.get(URL, headers=admin_headers)
    assert got.status_code == 200
    assert got.json()["bookingtime_api"] == expected
    listed = await client.get("/api/v1/connections", headers=admin_headers)
    assert listed.json()[0]["bookingtime_api"] == expected

    stored = await _stored(database)
    assert stored["bookingtime_client_id"] == "app-4711"
    assert BT_SECRET not in stored["bookingtime_client_secret_encrypted"]
    assert secret_box.decrypt(stored["bookingtime_client_secret_encrypted"]) == BT_SECRET
    for answer in (created, got, listed):
        assert BT_SECRET not in answer.text
    assert BT_SECRET not in caplog.text
    assert all(BT_SECRET not in str(record.args) for record in caplog.records)


async def test_same_client_id_keeps_the_stored_secret(
    client: httpx.AsyncClient, admin_headers: dict[str, str], database: Database
) -> None:
    body = connection_body(bookingtime_api=bookingtime_api())
    assert (await client.put(URL, json=body, headers=admin_headers)).status_code == 201
    before = await _stored(database)

    without_secret = connection_body(
        bookingtime_api=bookingtime_api(
            client_secret=..., busy_writeback=True, busy_exception_type="FREE"
        )
    )
    updated = await client.put(URL, json=without_secret, headers=admin_headers)
    assert updated.status_code == 200, updated.text
    assert updated.json()["bookingtime_api"]["busy_writeback"] is True
    after = await _stored(database)
    assert (
        after["bookingtime_client_secret_encrypted"]
        == before["bookingtime_client_secret_encrypted"]
    )
    assert after["bookingtime_busy_exception_type"] == "FREE"

    # Omitting the key leaves the settings as they are.
    untouched = await client.put(URL, json=connection_body(), headers=admin_headers)
    assert untouched.json()["bookingtime_api"]["busy_exception_type"] == "FREE"
    assert await _stored(database) == after


async def test_a_new_client_id_needs_a_secret(
    client: httpx.AsyncClient, admin_headers: dict[str, str], database: Database
) -> None:
    # Creating the connection with the connector needs the secret as well.
    missing = connection_body(bookingtime_api=bookingtime_api(client_secret=...))
    problem = assert_problem(
        await client.put(URL, json=missing, headers=admin_headers), 422, "validation_failed"
    )
    assert [e["field"] for e in problem["errors"]] == ["bookingtime_api.client_secret"]
    assert await raw_rows(database, "SELECT id FROM connection") == []

    body = connection_body(bookingtime_api=bookingtime_api())
    assert (await client.put(URL, json=body, headers=admin_headers)).status_code == 201
    other_app = connection_body(
        bookingtime_api=bookingtime_api(client_id="app-0815", client_secret=...)
    )
    problem = assert_problem(
        await client.put(URL, json=other_app, headers=admin_headers), 422, "validation_failed"
    )
    assert [e["field"] for e in problem["errors"]] == ["bookingtime_api.client_secret"]
    assert (await _stored(database))["bookingtime_client_id"] == "app-4711"

    with_secret = connection_body(
        bookingtime_api=bookingtime_api(client_id="app-0815", client_secret=OTHER_SECRET)
    )
    assert (await client.put(URL, json=with_secret, headers=admin_headers)).status_code == 200
    assert (await _stored(database))["bookingtime_client_id"] == "app-0815"


async def test_writeback_needs_an_exception_type(
    client: httpx.AsyncClient, admin_headers: dict[str, str], database: Database
) -> None:
    for api in (
        bookingtime_api(busy_writeback=True),
        bookingtime_api(busy_writeback=True, busy_exception_type=...),
    ):
        response = await client.put(
            URL, json=connection_body(bookingtime_api=api), headers=admin_headers
        )
        problem = assert_problem(response, 422, "validation_failed")
        assert [e["field"] for e in problem["errors"]] == ["bookingtime_api.busy_exception_type"]
        assert BT_SECRET not in response.text
    assert await raw_rows(database, "SELECT id FROM connection") == []


async def test_null_turns_the_connector_off(
    client: httpx.AsyncClient, admin_headers: dict[str, str], database: Database
) -> None:
    body = connection_body(
        bookingtime_api=bookingtime_api(busy_writeback=True, busy_exception_type="FREE")
    )
    assert (await client.put(URL, json=body, headers=admin_headers)).status_code == 201

    off = await client.put(URL, json=connection_body(bookingtime_api=None), headers=admin_headers)
    assert off.status_code == 200, off.text
    assert off.json()["bookingtime_api"] is None
    assert (await client.get(URL, headers=admin_headers)).json()["bookingtime_api"] is None
    stored = await _stored(database)
    assert stored["bookingtime_client_id"] is None
    assert stored["bookingtime_client_secret_encrypted"] is None
    assert not stored["bookingtime_busy_writeback"]
    assert stored["bookingtime_busy_exception_type"] is None

    # Off, the same client id is a new one again: the forgotten secret must be given.
    again = connection_body(bookingtime_api=bookingtime_api(client_secret=...))
    assert_problem(
        await client.put(URL, json=again, headers=admin_headers), 422, "validation_failed"
    )
