"""Webhook-secret rotation with a grace period: the replaced secret keeps verifying until
`previous_webhook_secret_expires_at`, the new one works at once, a second rotation keeps only
the secret it replaces, grace 0 cuts over at once; both secrets are stored encrypted."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.bookingtime.signature import (
    InvalidSignature,
    UndecodableBody,
    WebhookVerifier,
)
from app.config import Settings
from app.connections import service
from app.connections.schemas import ConnectionIn
from app.crypto import SecretBox
from app.db import Database
from app.models import Connection
from tests.admin.conftest import raw_rows
from tests.bookingtime.helpers import ORGANIZATION_ID, URL, encode, sample, sign
from tests.conftest import ADMIN_TOKEN, SECRET_KEY

OLD = "whsec_" + base64.b64encode(b"old-webhook-secret-0123456789abc").decode()
NEW = "whsec_" + base64.b64encode(b"new-webhook-secret-0123456789abc").decode()
NEWEST = "whsec_" + base64.b64encode(b"newest-webhook-secret-0123456789").decode()
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CONNECTION_URL = f"/api/v1/connections/{ORGANIZATION_ID}"
TOLERANCE = 300


@pytest.fixture
def grace_seconds() -> int:
    return 86_400


@pytest.fixture
def settings(db_url: str, grace_seconds: int) -> Settings:
    return Settings(
        database_url=db_url,
        secret_key=SECRET_KEY,
        admin_token=ADMIN_TOKEN,
        webhook_secret_grace_seconds=grace_seconds,
        _env_file=None,  # type: ignore[call-arg]
    )


def connection_body(webhook_secret: str) -> dict[str, Any]:
    return {
        "tenant": "72f988bf-86f1-41af-91ab-2d7cd011db47",
        "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
        "client_secret": "Xy48Q~client-secret-value-0123456789abcd",
        "webhook_secret": webhook_secret,
    }


async def put_secret(client: httpx.AsyncClient, secret: str) -> dict[str, Any]:
    response = await client.put(CONNECTION_URL, json=connection_body(secret), headers=ADMIN)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


async def deliver(
    client: httpx.AsyncClient, *secrets: str, name: str = "appointment_created"
) -> int:
    """POST a delivery whose `webhook-signature` carries one `v1` entry per secret."""
    body = encode(sample(name))
    headers = sign(body, secret=secrets[0])
    for other in secrets[1:]:
        extra = sign(body, webhook_id=headers["webhook-id"], secret=other)
        assert extra["webhook-timestamp"] == headers["webhook-timestamp"]
        headers["webhook-signature"] += " " + extra["webhook-signature"]
    response = await client.post(URL, content=body, headers=headers)
    if response.status_code == 401:
        assert response.json()["code"] == "invalid_signature", response.text
    return response.status_code


def freeze_lookups(app: FastAPI) -> list[float]:
    """The intake's 1 s connection memory on a clock the test moves."""
    now = [1000.0]
    app.state.bookingtime_intake.receivers.clock = lambda: now[0]
    return now


def as_utc(value: Any) -> datetime:
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    assert isinstance(value, datetime)
    return value if value.tzinfo else value.replace(tzinfo=UTC)


# --- the verifier, on a fixed `now` ---------------------------------------------------------


def headers_for(body: bytes, *secrets: str, at: float) -> dict[str, str]:
    moment = datetime.fromtimestamp(at, UTC)
    headers = sign(body, at=moment, secret=secrets[0])
    for other in secrets[1:]:
        extra = sign(body, webhook_id=headers["webhook-id"], at=moment, secret=other)
        headers["webhook-signature"] += " " + extra["webhook-signature"]
    return headers


def test_previous_secret_verifies_until_its_expiry_then_not() -> None:
    signed_at = float(int(time.time()))
    until = datetime.fromtimestamp(signed_at + 120, UTC)
    verifier = WebhookVerifier(NEW, previous_secret=OLD, previous_expires_at=until)
    body = encode(sample("appointment_created"))
    old = headers_for(body, OLD, at=signed_at)

    inside = verifier.verify(body, old, tolerance_seconds=TOLERANCE, now=signed_at + 119)
    assert inside.webhook_id == old["webhook-id"]
    with pytest.raises(InvalidSignature):
        verifier.verify(body, old, tolerance_seconds=TOLERANCE, now=signed_at + 120)
    # The current secret is unaffected by the grace period's end.
    new = headers_for(body, NEW, at=signed_at)
    assert verifier.verify(body, new, tolerance_seconds=TOLERANCE, now=signed_at + 121)
    # Without a previous secret, only the current one verifies.
    with pytest.raises(InvalidSignature):
        WebhookVerifier(NEW).verify(body, old, tolerance_seconds=TOLERANCE, now=signed_at)


def test_any_matching_v1_signature_counts() -> None:
    signed_at = float(int(time.time()))
    until = datetime.fromtimestamp(signed_at + 60, UTC)
    verifier = WebhookVerifier(NEW, previous_secret=OLD, previous_expires_at=until)
    body = encode(sample("appointment_updated"))
    for secrets in ((OLD, NEW), (NEW, OLD), (NEWEST, OLD), (NEWEST, NEW)):
        headers = headers_for(body, *secrets, at=signed_at)
        assert headers["webhook-signature"].count("v1,") == 2
        assert verifier.verify(body, headers, tolerance_seconds=TOLERANCE, now=signed_at)
    after = signed_at + 61
    assert verifier.verify(
        body, headers_for(body, OLD, NEW, at=signed_at), tolerance_seconds=TOLERANCE, now=after
    )
    with pytest.raises(InvalidSignature):
        verifier.verify(
            body,
            headers_for(body, NEWEST, OLD, at=signed_at),
            tolerance_seconds=TOLERANCE,
            now=after,
        )


def test_a_non_utf8_body_signed_with_the_previous_secret_is_authentic() -> None:
    signed_at = int(time.time())
    until = datetime.fromtimestamp(signed_at + 60, UTC)
    verifier = WebhookVerifier(NEW, previous_secret=OLD, previous_expires_at=until)
    body = b'{"type": "\xff"}'
    key = base64.b64decode(OLD.removeprefix("whsec_"))
    digest = hmac.new(key, f"msg_1.{signed_at}.".encode() + body, hashlib.sha256).digest()
    headers = {
        "webhook-id": "msg_1",
        "webhook-timestamp": str(signed_at),
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }
    with pytest.raises(UndecodableBody):  # authentic, so "not JSON" rather than 401
        verifier.verify(body, headers, tolerance_seconds=TOLERANCE, now=signed_at)
    with pytest.raises(InvalidSignature):
        verifier.verify(body, headers, tolerance_seconds=TOLERANCE, now=signed_at + 60)


# --- rotation through the admin API and the webhook endpoint ----------------------------------


async def test_old_secret_accepted_during_grace_new_one_at_once(
    client: httpx.AsyncClient, app: FastAPI, database: Database, secret_box: SecretBox
) -> None:
    now = freeze_lookups(app)
    created = await put_secret(client, OLD)
    assert created["previous_webhook_secret_expires_at"] is None
    assert await deliver(client, OLD) == 202  # the connection is now remembered for 1 s

    before = datetime.now(UTC)
    rotated = await put_secret(client, NEW)
    shown = as_utc(rotated["previous_webhook_secret_expires_at"])
    assert before + timedelta(days=1) <= shown <= datetime.now(UTC) + timedelta(days=1)
    assert "whsec_" not in str(rotated)

    # The remembered connection knows only OLD: NEW forces a fresh lookup and works at once.
    assert await deliver(client, NEW, name="appointment_updated") == 202
    # The fresh lookup also read the previous secret: OLD still verifies within the grace.
    now[0] += 0.5
    assert await deliver(client, OLD, name="appointment_moved") == 202
    now[0] += 5  # and after the remembered connection is gone, from a new lookup as well
    assert await deliver(client, OLD, name="appointment_canceled") == 202
    got = await client.get(CONNECTION_URL, headers=ADMIN)
    assert as_utc(got.json()["previous_webhook_secret_expires_at"]) == shown

    # The grace period ends (the stored expiry passes): OLD is refused, NEW still works.
    async with database.session_scope() as session:
        await session.execute(
            update(Connection).values(
                previous_webhook_secret_expires_at=datetime.now(UTC) - timedelta(seconds=1)
            )
        )
    now[0] += 5
    assert await deliver(client, OLD) == 401
    assert await deliver(client, NEW) == 202
    got = await client.get(CONNECTION_URL, headers=ADMIN)
    assert got.json()["previous_webhook_secret_expires_at"] is None


async def test_both_secrets_in_one_header(client: httpx.AsyncClient, app: FastAPI) -> None:
    freeze_lookups(app)
    await put_secret(client, OLD)
    await put_secret(client, NEW)
    assert await deliver(client, OLD, NEW) == 202
    assert await deliver(client, NEWEST, OLD, name="appointment_updated") == 202
    assert await deliver(client, NEWEST, name="appointment_moved") == 401


async def test_second_rotation_keeps_only_the_secret_it_replaces(
    client: httpx.AsyncClient, app: FastAPI, database: Database, secret_box: SecretBox
) -> None:
    now = freeze_lookups(app)
    await put_secret(client, OLD)
    first = await put_secret(client, NEW)
    second = await put_secret(client, NEWEST)
    assert as_utc(second["previous_webhook_secret_expires_at"]) >= as_utc(
        first["previous_webhook_secret_expires_at"]
    )
    (row,) = await raw_rows(database, "SELECT * FROM connection")
    assert secret_box.decrypt(row["previous_webhook_secret_encrypted"]) == NEW
    assert secret_box.decrypt(row["webhook_secret_encrypted"]) == NEWEST
    now[0] += 5
    assert await deliver(client, NEWEST) == 202
    assert await deliver(client, NEW, name="appointment_updated") == 202
    assert await deliver(client, OLD, name="appointment_moved") == 401

    # The same secret again is no rotation: the grace period runs on unchanged.
    again = await put_secret(client, NEWEST)
    assert (
        again["previous_webhook_secret_expires_at"] == second["previous_webhook_secret_expires_at"]
    )


@pytest.mark.parametrize("grace_seconds", [0])
async def test_grace_zero_cuts_over_at_once(
    client: httpx.AsyncClient, app: FastAPI, database: Database
) -> None:
    freeze_lookups(app)
    await put_secret(client, OLD)
    assert await deliver(client, OLD) == 202  # remembered with OLD
    rotated = await put_secret(client, NEW)
    assert rotated["previous_webhook_secret_expires_at"] is None
    (row,) = await raw_rows(database, "SELECT * FROM connection")
    assert row["previous_webhook_secret_encrypted"] is None
    assert row["previous_webhook_secret_expires_at"] is None
    # NEW works at once (a fresh lookup), and that lookup left nothing for OLD.
    assert await deliver(client, NEW, name="appointment_updated") == 202
    assert await deliver(client, OLD, name="appointment_moved") == 401


async def test_secrets_are_stored_encrypted(
    client: httpx.AsyncClient, database: Database, secret_box: SecretBox
) -> None:
    await put_secret(client, OLD)
    await put_secret(client, NEW)
    (row,) = await raw_rows(database, "SELECT * FROM connection")
    stored = " ".join(str(value) for value in row.values())
    for secret in (OLD, NEW):
        assert secret not in stored
        assert secret.removeprefix("whsec_") not in stored
    assert secret_box.decrypt(row["previous_webhook_secret_encrypted"]) == OLD
    assert row["previous_webhook_secret_encrypted"] != row["webhook_secret_encrypted"]


async def test_rotation_sets_the_expiry_from_now(database: Database, secret_box: SecretBox) -> None:
    now = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
    grace = timedelta(hours=6)

    async def put(secret: str, at: datetime) -> Connection:
        async with database.session_scope() as session:
            result = await service.put_connection(
                session,
                secret_box=secret_box,
                organization_id=ORGANIZATION_ID,
                data=ConnectionIn.model_validate(connection_body(secret)),
                webhook_secret_grace=grace,
                now=at,
            )
            return result.summary.connection

    await put(OLD, now)
    rotated = await put(NEW, now)
    assert rotated.previous_webhook_secret_expires_at == now + grace
    async with database.session() as session:
        stored = await session.get(Connection, rotated.id)
        assert stored is not None
        assert stored.previous_webhook_secret_expires_at == now + grace
        assert stored.previous_webhook_secret_expires_at.tzinfo is not None
    # A second rotation restarts the period from its own time.
    later = now + timedelta(hours=1)
    again = await put(NEWEST, later)
    assert again.previous_webhook_secret_expires_at == later + grace
