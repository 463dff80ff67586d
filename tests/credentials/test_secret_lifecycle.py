"""The client secret's lifecycle: state in the API, expiry warnings once per crossing, Entra's
rejection recorded and cleared, and rotation verified against the sandbox over HTTPS."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from app.connections.tasks import SECRET_EXPIRY_JOB, check_secret_expiry_impl
from app.credentials.secrets import secret_status
from app.models import Appointment, Connection, Employee, SyncRecord
from app.queue.errors import PermanentError
from app.sync.service import sync_appointment_impl
from app.tasks import build_registry
from tests.conftest import ADMIN_TOKEN
from tests.helpers import assert_problem
from tests.sync.samples import MAX, appointment
from tests.world import MakeWorld
from tests.world import World as BaseWorld

ORG = "f6SecretLifecycle000000000000000"
URL = f"/api/v1/connections/{ORG}"
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MAILBOX = "max@contoso.example"
APPOINTMENT = "edSecretLifecycle000000000000000"


@dataclass
class World(BaseWorld):
    """The shared world, driven through the admin API in-process."""

    def body(self, **overrides: Any) -> dict[str, Any]:
        return {
            "tenant": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.secret,
            "locale": "en",
            **overrides,
        }

    async def put(self, **overrides: Any) -> httpx.Response:
        return await self.http.put(URL, json=self.body(**overrides), headers=HEADERS)

    async def get(self) -> dict[str, Any]:
        response = await self.http.get(URL, headers=HEADERS)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    async def stored(self) -> Connection:
        async with self.database.session_scope() as session:
            row = await session.scalar(select(Connection).where(Connection.organization_id == ORG))
            assert row is not None
            session.expunge(row)
            return row

    async def verify_token(self) -> str:
        response = await self.http.post(f"{URL}/verify", headers=HEADERS)
        assert response.status_code == 200, response.text
        code: str = response.json()["checks"][0]["code"]
        return code

    async def history(self) -> list[SyncRecord]:
        async with self.database.session_scope() as session:
            rows = await session.scalars(select(SyncRecord).order_by(SyncRecord.id))
            return list(rows)


@pytest.fixture
async def world(make_world: MakeWorld) -> AsyncIterator[World]:
    async with make_world(World, seed=11, mailboxes=[MAILBOX]) as built:
        yield built


# Rotation ----------------------------------------------------------------------------------


async def test_rotation_to_a_working_secret_swaps_it(world: World) -> None:
    assert (await world.put(client_secret_expires_at="2027-05-31")).status_code == 201
    new = world.sandbox.control.add_secret(
        world.client_id, expires_at=datetime.now(UTC) + timedelta(days=180)
    )
    requests_before = world.sandbox.control.token_requests

    response = await world.put(client_secret=new)

    assert response.status_code == 200, response.text
    # Entra was asked before the swap.
    assert world.sandbox.control.token_requests > requests_before
    stored = await world.stored()
    assert world.secret_box.decrypt(stored.client_secret_encrypted) == new
    # The old date described the old secret.
    assert response.json()["client_secret_expires_at"] is None
    assert await world.verify_token() == "token_acquired"


@pytest.mark.parametrize(
    ("kind", "reason", "aadsts"),
    [("wrong", "secret_invalid", 7000215), ("expired", "secret_expired", 7000222)],
)
async def test_rotation_to_a_refused_secret_is_422_and_keeps_the_old_one(
    world: World, kind: str, reason: str, aadsts: int
) -> None:
    assert (await world.put(client_secret_expires_at="2027-05-31")).status_code == 201
    if kind == "wrong":
        new = "Nw91Q~not-a-secret-of-this-app-0123456789"
    else:
        new = world.sandbox.control.add_secret(
            world.client_id, expires_at=datetime.now(UTC) - timedelta(days=1)
        )

    response = await world.put(client_secret=new, client_secret_expires_at="2028-01-01")

    body = assert_problem(response, 422, "client_secret_rejected")
    assert body["reason"] == reason
    assert body["aadsts_code"] == aadsts
    assert f"AADSTS{aadsts}" in body["detail"]
    assert "client secret" in body["detail"]
    assert "unchanged" in body["detail"]
    assert body["errors"][0]["field"] == "client_secret"
    assert new not in response.text
    stored = await world.stored()
    assert world.secret_box.decrypt(stored.client_secret_encrypted) == world.secret
    # Nothing else of the refused PUT was applied either.
    assert stored.client_secret_expires_at == datetime(2027, 5, 31, tzinfo=UTC)
    assert await world.verify_token() == "token_acquired"


async def test_rotation_while_entra_is_unreachable_is_503_and_changes_nothing(
    world: World,
) -> None:
    assert (await world.put()).status_code == 201
    new = world.sandbox.control.add_secret(
        world.client_id, expires_at=datetime.now(UTC) + timedelta(days=180)
    )
    world.sandbox.control.faults.add("503", path=r"/oauth2/v2\.0/token")

    response = await world.put(client_secret=new)

    assert_problem(response, 503, "entra_unavailable")
    assert int(response.headers["retry-after"]) > 0
    stored = await world.stored()
    assert world.secret_box.decrypt(stored.client_secret_encrypted) == world.secret


async def test_same_secret_again_and_creation_are_not_checked(world: World) -> None:
    world.sandbox.control.faults.add("503", path=r"/oauth2/v2\.0/token")
    assert (await world.put()).status_code == 201
    assert (await world.put(locale="de")).status_code == 200
    assert world.sandbox.control.token_requests == 0


# Rejection ---------------------------------------------------------------------------------


async def _book(world: World) -> None:
    connection = await world.stored()
    async with world.database.session_scope() as session:
        session.add(Employee(connection_id=connection.id, booking_resource_id=MAX, mailbox=MAILBOX))
        session.add(
            Appointment(
                connection_id=connection.id,
                appointment_id=APPOINTMENT,
                event_at=datetime.now(UTC),
                event_type="appointment.created",
                payload=appointment(),
            )
        )


async def _sync(world: World) -> None:
    await sync_appointment_impl(
        database=world.database,
        settings=world.app.state.settings,
        secret_box=world.secret_box,
        graph=world.app.state.graph,
        connection_id=(await world.stored()).id,
        appointment_id=APPOINTMENT,
    )


async def _store_secret(world: World, secret: str) -> None:
    """Change the stored secret behind the API's back, as Entra changing its mind would."""
    async with world.database.session_scope() as session:
        row = await session.scalar(select(Connection).where(Connection.organization_id == ORG))
        assert row is not None
        row.client_secret_encrypted = world.secret_box.encrypt(secret)


async def test_secret_refused_in_a_sync_shows_rejected_until_a_success(world: World) -> None:
    # The date says fine, Entra says no: Entra wins.
    far = (datetime.now(UTC) + timedelta(days=365)).date().isoformat()
    response = await world.put(
        client_secret="Nw91Q~not-a-secret-of-this-app-0123456789", client_secret_expires_at=far
    )
    assert response.status_code == 201
    assert response.json()["secret_state"] == "ok"

    await _book(world)
    with pytest.raises(PermanentError):
        await _sync(world)

    assert [r.code for r in await world.history()] == ["secret_invalid"]
    got = await world.get()
    assert got["secret_state"] == "rejected"
    assert got["secret_days_left"] in (364, 365)
    listed = await world.http.get("/api/v1/connections", headers=HEADERS)
    assert listed.json()[0]["secret_state"] == "rejected"

    # A new, working secret clears it (after Entra accepted it).
    assert (await world.put(client_secret=world.secret)).status_code == 200
    assert (await world.get())["secret_state"] == "ok"
    stored = await world.stored()
    assert stored.client_secret_rejected_at is None


async def test_a_successful_sync_clears_the_rejection(world: World) -> None:
    assert (await world.put()).status_code == 201
    await _book(world)
    await _store_secret(world, "Nw91Q~not-a-secret-of-this-app-0123456789")
    with pytest.raises(PermanentError):
        await _sync(world)
    assert (await world.get())["secret_state"] == "rejected"

    await _store_secret(world, world.secret)
    await _sync(world)

    assert [r.code for r in await world.history()] == ["secret_invalid", "created"]
    assert (await world.get())["secret_state"] == "ok"


async def test_verify_records_and_clears_the_rejection(world: World) -> None:
    assert (await world.put()).status_code == 201
    expired = world.sandbox.control.add_secret(
        world.client_id, expires_at=datetime.now(UTC) - timedelta(days=1)
    )
    # Entra expires a secret on its own schedule: the stored secret goes bad without a PUT.
    await _store_secret(world, expired)
    assert await world.verify_token() == "secret_expired"
    assert (await world.get())["secret_state"] == "rejected"
    assert (await world.stored()).client_secret_rejected_code == "secret_expired"

    # The working secret is back in place: a verify clears the rejection.
    await _store_secret(world, world.secret)
    assert await world.verify_token() == "token_acquired"
    assert (await world.get())["secret_state"] == "ok"


# Expiry ------------------------------------------------------------------------------------


async def test_state_and_days_left_follow_the_date(world: World) -> None:
    now = datetime.now(UTC)
    cases = [
        (now + timedelta(days=40, hours=1), "ok", 40),
        (now + timedelta(days=29, hours=1), "expiring", 29),
        (now + timedelta(hours=3), "expiring", 0),
        (now - timedelta(hours=1), "expired", 0),
    ]
    assert (await world.put()).status_code == 201
    assert (await world.get())["secret_state"] == "ok"
    assert (await world.get())["secret_days_left"] is None
    for expires_at, state, days in cases:
        response = await world.put(client_secret_expires_at=expires_at.isoformat())
        assert response.status_code == 200, response.text
        got = await world.get()
        assert (got["secret_state"], got["secret_days_left"]) == (state, days), expires_at


async def test_each_threshold_is_recorded_once_and_logged(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    expires_at = datetime(2027, 5, 31, tzinfo=UTC)
    assert (await world.put(client_secret_expires_at="2027-05-31")).status_code == 201

    async def run(days_before: float) -> list[str]:
        before = len(await world.history())
        await check_secret_expiry_impl(world.database, now=expires_at - timedelta(days=days_before))
        return [r.code for r in (await world.history())[before:]]

    with caplog.at_level("WARNING", logger="app.credentials.secrets"):
        assert await run(45) == []
        assert await run(30) == ["secret_expiring"]
        assert await run(29.5) == []  # hourly runs in between add nothing
        assert await run(20) == []
        assert await run(13.9) == ["secret_expiring"]
        assert await run(13) == []
        # A pause across a threshold: one current warning, not a stale burst.
        assert await run(0.5) == ["secret_expiring_soon"]
        assert await run(0.2) == []
        assert await run(-1) == []  # expired: the state says it
    records = [r for r in await world.history() if r.action == "secret"]
    assert [r.details["days"] for r in records if r.details] == [30, 14, 1]
    assert records[0].status == "warning"
    assert records[0].message.startswith(
        "The app registration's client secret expires within 30 days (2027-05-31 00:00 UTC)"
    )
    assert records[0].booking_resource_id is None
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 3
    assert all(ORG in line for line in warnings)

    # The history endpoint shows them too.
    listed = await world.http.get("/api/v1/sync-history", headers=HEADERS)
    assert listed.status_code == 200
    assert "secret_expiring_soon" in listed.text

    # A new date starts the warnings afresh.
    assert (await world.put(client_secret_expires_at="2028-05-31")).status_code == 200
    await check_secret_expiry_impl(
        world.database, now=datetime(2028, 5, 31, tzinfo=UTC) - timedelta(days=6)
    )
    assert (await world.history())[-1].details == {"days": 7, "expires_at": "2028-05-31 00:00 UTC"}


async def test_warnings_are_german_for_a_german_connection(world: World) -> None:
    assert (await world.put(locale="de", client_secret_expires_at="2027-05-31")).status_code == 201
    await check_secret_expiry_impl(world.database, now=datetime(2027, 5, 20, tzinfo=UTC))
    (record,) = await world.history()
    assert record.message.startswith(
        "Der geheime Clientschlüssel der App-Registrierung läuft in höchstens 14 Tagen ab"
    )


async def test_expiry_check_is_a_periodic_job_and_readyz_stays_200(world: World) -> None:
    registry = build_registry(
        world.app.state.settings, graph=world.app.state.graph, secret_box=world.secret_box
    )
    kind = registry.get(SECRET_EXPIRY_JOB)
    assert kind is not None
    assert kind in registry.periodic
    assert kind.every_seconds == 3600
    past = (datetime.now(UTC) - timedelta(days=2)).isoformat()
    assert (await world.put(client_secret_expires_at=past)).status_code == 201
    assert (await world.get())["secret_state"] == "expired"
    assert (await world.http.get("/readyz")).status_code == 200


def test_status_without_a_connection_row_in_the_database() -> None:
    now = datetime(2027, 1, 1, tzinfo=UTC)
    connection = Connection(client_secret_expires_at=now + timedelta(days=7))
    status = secret_status(connection, now=now)
    assert (status.state, status.days_left) == ("expiring", 7)
