"""The subscriptions' texts in either language: each history record keeps what it needs to be told
again in the other language (mailbox, expiry, the failure's own code), a failure is told in one
language throughout, and records stored before their params still show their stored text."""

from __future__ import annotations

import pytest
from sqlalchemy import update

from app.graph.errors import GraphError
from app.models import Connection, SyncRecord
from tests.notifications.subs_helpers import MAX, MAX_MAILBOX, ORG, World

HISTORY = "/api/v1/sync-history"
GERMAN = {"Accept-Language": "de"}
ENGLISH = {"Accept-Language": "en"}
TYPO = "d.wellt@contoso.example"
TYPO_ID = "brTypo00000000000000000000000000"


async def _messages(world: World, headers: dict[str, str], code: str) -> list[str]:
    response = await world.http.get(HISTORY, headers=headers)
    assert response.status_code == 200, response.text
    return [item["message"] for item in response.json()["items"] if item["code"] == code]


async def test_a_created_subscription_is_told_again_with_its_mailbox_and_expiry(
    world: World,
) -> None:
    await world.ensure(now=world.control.clock.freeze())
    row = await world.subscription()
    assert row is not None and row.expires_at is not None
    expiry = row.expires_at.strftime("%Y-%m-%d %H:%M UTC")
    # Written in the connection's language (English), told again in German and back.
    assert await _messages(world, GERMAN, "subscription_created") == [
        f"Änderungsbenachrichtigungen für {MAX_MAILBOX} eingerichtet (gültig bis {expiry})."
    ]
    assert await _messages(world, ENGLISH, "subscription_created") == [
        f"Change notifications for {MAX_MAILBOX} set up (valid until {expiry})."
    ]


async def test_a_failed_subscription_is_told_in_one_language(world: World) -> None:
    async with world.database.session_scope() as session:
        await session.execute(update(Connection).values(locale="de"))
    await world.employ(TYPO_ID, TYPO)
    with pytest.raises(GraphError, check=lambda error: error.permanent):
        await world.ensure(TYPO)

    opening = f"Änderungsbenachrichtigungen für {TYPO} konnten nicht eingerichtet werden: "
    invalid = f"Der Benutzer {TYPO} ist ungültig – entweder existiert er nicht"
    [stored] = [r for r in await world.records() if r.status == "failed"]
    assert stored.code == "mailbox_invalid"
    assert stored.message.startswith(opening + invalid)
    assert "User" not in stored.message

    [english] = await _messages(world, ENGLISH, "mailbox_invalid")
    assert english.startswith(
        f"Change notifications for {TYPO} could not be set up: User {TYPO} is invalid"
    )
    assert "Benutzer" not in english
    assert await _messages(world, GERMAN, "mailbox_invalid") == [stored.message]

    # The subscription's own status, listed or on the employee, is told again too.
    listed = await world.http.get("/api/v1/subscriptions", headers=ENGLISH)
    [failed] = [item for item in listed.json()["items"] if item["mailbox"] == TYPO]
    assert failed["last_error_message"] == english
    german = await world.http.get("/api/v1/subscriptions", headers=GERMAN)
    [failed] = [item for item in german.json()["items"] if item["mailbox"] == TYPO]
    assert failed["last_error_message"] == stored.message
    employee = await world.http.get(
        f"/api/v1/connections/{ORG}/employees/{TYPO_ID}", headers=ENGLISH
    )
    assert employee.json()["subscription"]["message"] == english


async def test_records_stored_without_their_params_keep_their_text(world: World) -> None:
    stored = "Änderungsbenachrichtigungen für max@contoso.example eingerichtet (gültig bis 1.1.)."
    async with world.database.session_scope() as session:
        # As written before the records kept their params: no mailbox or expiry in the details.
        session.add(
            SyncRecord(
                connection_id=world.connection_id,
                booking_resource_id=MAX,
                mailbox=MAX_MAILBOX,
                action="subscription",
                status="ok",
                code="subscription_created",
                message=stored,
                details={"subscription_id": "7f105c7d", "recreated": False},
            )
        )
        # The mailbox is the record's own: enough for this one.
        session.add(
            SyncRecord(
                connection_id=world.connection_id,
                mailbox=MAX_MAILBOX,
                action="subscription",
                status="ok",
                code="subscription_deleted",
                message=f"Änderungsbenachrichtigungen für {MAX_MAILBOX} beendet.",
                details={"subscription_id": "7f105c7d"},
            )
        )
        # An English reason in a German text, from before reasons had codes.
        session.add(
            SyncRecord(
                connection_id=world.connection_id,
                appointment_id="edOld000000000000000000000000001",
                action="plan",
                status="error",
                code="invalid_appointment",
                message="Der Termin kann nicht übertragen werden: the appointment has no id",
                details={"error": "the appointment has no id"},
            )
        )
    assert await _messages(world, ENGLISH, "subscription_created") == [stored]
    assert await _messages(world, ENGLISH, "subscription_deleted") == [
        f"Change notifications for {MAX_MAILBOX} stopped."
    ]
    assert await _messages(world, ENGLISH, "invalid_appointment") == [
        "Der Termin kann nicht übertragen werden: the appointment has no id"
    ]
