"""Backfill, resync, removal and changed event settings through the admin API, with the
in-process worker and the sandbox over HTTPS, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from app.busy.tasks import MAILBOX_SWEEP
from app.config import WorkerSettings
from app.connections import checks
from app.crypto import SecretBox
from app.models import Connection, Job, SyncRecord
from tests.bookingtime.helpers import ORGANIZATION_ID as ORG
from tests.bookingtime.helpers import WEBHOOK_SECRET, Sender
from tests.conftest import ADMIN_TOKEN, SECRET_KEY
from tests.helpers import eventually
from tests.sync.samples import appointment
from tests.world import MakeWorld
from tests.world import World as BaseWorld

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MAX = "max@contoso.example"
ERIKA = "erika@contoso.example"
MAX_ID = "brMax000000000000000000000000000"
ERIKA_ID = "brErika0000000000000000000000000"
CONNECTION_URL = f"/api/v1/connections/{ORG}"
SETTLE_TIMEOUT = 20.0


def employee_url(resource: str) -> str:
    return f"{CONNECTION_URL}/employees/{resource}"


@dataclass
class World(BaseWorld):
    """The shared world with the job worker running, driven in-process."""

    async def connect(self, **overrides: Any) -> httpx.Response:
        body = {
            "tenant": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.secret,
            "webhook_secret": WEBHOOK_SECRET,
            "locale": "en",
            **overrides,
        }
        response = await self.http.put(CONNECTION_URL, json=body, headers=HEADERS)
        assert response.status_code in (200, 201), response.text
        return response

    async def employ(self, resource: str, mailbox: str) -> dict[str, Any]:
        response = await self.http.put(
            employee_url(resource), json={"mailbox": mailbox}, headers=HEADERS
        )
        assert response.status_code in (200, 201), response.text
        body: dict[str, Any] = response.json()
        return body

    async def deliver(
        self, payload: dict[str, Any], event_type: str = "appointment.created"
    ) -> None:
        document = {
            "type": event_type,
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {"organizationId": ORG, "appointment": payload},
        }
        response = await Sender(self.http).send(document)
        assert response.status_code == 202, response.text

    async def settle(self) -> list[Job]:
        """Wait until no sync job is pending or running; returns every sync job."""

        async def idle() -> tuple[list[Job]] | None:
            async with self.database.session() as session:
                # The periodic safety delta is always waiting for its next tick.
                kinds = Job.kind.like("sync.%") & (Job.kind != MAILBOX_SWEEP)
                jobs = list(await session.scalars(select(Job).where(kinds)))
            busy = any(j.state in ("pending", "running") for j in jobs)
            return None if busy else (jobs,)

        [jobs] = await eventually(idle, within=SETTLE_TIMEOUT)
        return jobs

    def subjects(self, mailbox: str) -> list[str]:
        return sorted(str(e.get("subject")) for e in self.sandbox.control.events(mailbox))

    async def job_mailboxes(self, appointment_id: str) -> list[str | None]:
        """The mailbox each `sync.appointment` job of the appointment is limited under, in
        order (None: under no mailbox's limit)."""
        async with self.database.session() as session:
            jobs = await session.scalars(select(Job).where(Job.kind == "sync.appointment"))
            ordered = sorted(jobs, key=lambda job: job.id)
        return [job.mailbox for job in ordered if job.args["appointment_id"] == appointment_id]

    async def records(self, code: str | None = None) -> list[SyncRecord]:
        async with self.database.session() as session:
            query = select(SyncRecord).order_by(SyncRecord.id)
            if code is not None:
                query = query.where(SyncRecord.code == code)
            return list(await session.scalars(query))


@pytest.fixture
async def world(make_world: MakeWorld) -> AsyncIterator[World]:
    async with make_world(
        World,
        seed=11,
        mailboxes=[MAX, ERIKA],
        run_worker=True,
        worker=WorkerSettings(poll_seconds=0.05, backoff_base_seconds=0.05),
    ) as built:
        yield built


def booked(
    appointment_id: str, name: str, *resources: str, days: float = 2, canceled: bool = False
) -> dict[str, Any]:
    """An appointment `days` from now (negative: in the past) for the given employees."""
    start = (datetime.now(UTC) + timedelta(days=days)).replace(microsecond=0)
    return appointment(
        id=appointment_id,
        name=name,
        start=start.isoformat(),
        end=(start + timedelta(hours=1)).isoformat(),
        timeZone="Europe/Berlin",
        canceled=canceled,
        bookingResourceList=[{"id": r, "type": "EMPLOYEE", "name": r} for r in resources],
    )


async def test_mapping_an_employee_backfills_what_calbridge_holds(world: World) -> None:
    await world.connect(event_settings={"subject_template": "{name}"})
    # Delivered while Max is not mapped yet: stored, nothing written.
    await world.deliver(booked("edFuture0000000000000000000000001", "Future", MAX_ID))
    await world.deliver(booked("edTomorrow00000000000000000000001", "Tomorrow", MAX_ID, days=1))
    await world.deliver(booked("edPast00000000000000000000000001", "Past", MAX_ID, days=-3))
    await world.deliver(
        booked("edCanceled000000000000000000001", "Canceled", MAX_ID, canceled=True)
    )
    await world.deliver(booked("edErika00000000000000000000000001", "Erika's", ERIKA_ID))
    await world.settle()
    assert world.subjects(MAX) == []

    body = await world.employ(MAX_ID, MAX)
    assert body["mailbox_check"]["ok"] is True
    assert body["backfill_queued"] is True
    await world.settle()
    # From yesterday on, not cancelled, only Max's.
    assert world.subjects(MAX) == ["Future", "Tomorrow"]
    assert world.subjects(ERIKA) == []
    [queued] = await world.records("backfill_queued")
    assert queued.details == {"count": 2, "employee": MAX_ID, "mailbox": MAX, "reason": "backfill"}
    assert queued.message == (
        f"The existing appointments of {MAX_ID} (2) are being synced to the calendar of {MAX}."
    )

    # The same mapping again: nothing to backfill, nothing written twice.
    again = await world.employ(MAX_ID, MAX)
    assert again["backfill_queued"] is False
    await world.settle()
    assert world.subjects(MAX) == ["Future", "Tomorrow"]

    # Moved to another mailbox: the events move along.
    moved = await world.employ(MAX_ID, ERIKA)
    assert moved["backfill_queued"] is True
    await world.settle()
    assert world.subjects(MAX) == []
    assert world.subjects(ERIKA) == ["Future", "Tomorrow"]
    # Each job is under the limit of the mailbox the appointment is in when it is queued (none
    # while Max was not mapped).
    assert await world.job_mailboxes("edFuture0000000000000000000000001") == [None, MAX, ERIKA]


async def test_a_failed_mailbox_check_holds_the_backfill_until_it_is_fixed(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    # About the held backfill, not the PUT's short wait for the check (3 s, then deferred): on a
    # loaded machine the check may take longer than that, so the PUT waits for its verdict here.
    monkeypatch.setattr(checks, "EMPLOYEE_CHECK_TIMEOUT", 30.0)
    await world.connect(event_settings={"subject_template": "{name}"})
    await world.deliver(booked("edFuture0000000000000000000000001", "Future", MAX_ID))
    await world.settle()
    blocked = world.sandbox.control
    blocked.block(world.client_id, MAX)
    body = await world.employ(MAX_ID, MAX)
    assert body["mailbox_check"]["code"] == "access_policy_blocked"
    assert body["backfill_queued"] is False
    await world.settle()
    assert await world.records("backfill_queued") == []

    # The admin fixes the policy and saves the mapping again: the error status triggers it.
    blocked.block(world.client_id, MAX, blocked=False)
    fixed = await world.employ(MAX_ID, MAX)
    assert fixed["mailbox_check"]["ok"] is True
    assert fixed["backfill_queued"] is True
    await world.settle()
    assert world.subjects(MAX) == ["Future"]


async def test_resync_repairs_events_changed_or_deleted_in_outlook(world: World) -> None:
    await world.connect(event_settings={"subject_template": "{name}"})
    await world.employ(MAX_ID, MAX)
    await world.deliver(booked("edOne000000000000000000000000001", "One", MAX_ID))
    await world.deliver(booked("edTwo000000000000000000000000001", "Two", MAX_ID, days=3))
    await world.settle()
    events = {e["subject"]: e["id"] for e in world.sandbox.control.events(MAX)}
    assert set(events) == {"One", "Two"}
    world.sandbox.control.outlook_edit(MAX, events["One"], {"subject": "Edited in Outlook"})
    world.sandbox.control.outlook_delete(MAX, events["Two"])

    # A redelivery plans by content hashes: nothing of ours changed, nothing is sent.
    await world.deliver(booked("edOne000000000000000000000000001", "One", MAX_ID))
    await world.settle()
    assert world.subjects(MAX) == ["Edited in Outlook"]

    response = await world.http.post(employee_url(MAX_ID) + "/resync", headers=HEADERS)
    assert response.status_code == 202, response.text
    assert response.json()["queued"] is True
    assert response.json()["message"] == (
        f"The appointments of {MAX_ID} are being resynced to the calendar of {MAX}."
    )
    await world.settle()
    assert world.subjects(MAX) == ["One", "Two"]
    [queued] = await world.records("resync_queued")
    assert queued.details is not None and queued.details["count"] == 2

    missing = await world.http.post(employee_url(ERIKA_ID) + "/resync", headers=HEADERS)
    assert missing.status_code == 404
    assert missing.json()["type"].endswith("employee_not_found")


async def test_delete_with_remove_events_empties_the_mailbox(world: World) -> None:
    await world.connect(event_settings={"subject_template": "{name}"})
    await world.employ(MAX_ID, MAX)
    await world.employ(ERIKA_ID, ERIKA)
    await world.deliver(booked("edOne000000000000000000000000001", "One", MAX_ID, ERIKA_ID))
    await world.deliver(booked("edTwo000000000000000000000000001", "Two", MAX_ID, days=3))
    await world.settle()
    assert world.subjects(MAX) == ["One", "Two"]

    response = await world.http.delete(
        employee_url(MAX_ID), params={"remove_events": "true"}, headers=HEADERS
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["events"] == 2
    assert body["mailbox"] == MAX
    assert body["mailbox_check"]["ok"] is True
    assert body["message"] == (
        f"The events calbridge created for {MAX_ID} (2) are being removed from the calendar of "
        f"{MAX}."
    )
    await world.settle()
    assert world.subjects(MAX) == []
    assert world.subjects(ERIKA) == ["One"]  # the shared appointment stays for Erika
    deleted = [r for r in await world.records("deleted") if r.booking_resource_id == MAX_ID]
    assert len(deleted) == 2
    # The removal's jobs (the last ones) are under the limit of the mailbox they delete from;
    # the shared appointment's delivery (two mailboxes) was under none.
    shared = await world.job_mailboxes("edOne000000000000000000000000001")
    assert shared[0] is None and shared[-1] == MAX
    assert set(await world.job_mailboxes("edTwo000000000000000000000000001")) == {MAX}
    gone = await world.http.get(employee_url(MAX_ID), headers=HEADERS)
    assert gone.status_code == 404

    # Nothing to remove: 200, no mailbox check, a plain statement.
    nobody = "brNobody000000000000000000000001"
    await world.employ(nobody, ERIKA)
    empty = await world.http.delete(
        employee_url(nobody), params={"remove_events": "true"}, headers=HEADERS
    )
    assert empty.status_code == 200, empty.text
    assert empty.json()["events"] == 0
    assert empty.json()["mailbox_check"] is None
    assert empty.json()["message"] == (
        f"The calendar of {ERIKA} holds no events calbridge created for {nobody}."
    )


async def test_delete_without_remove_events_keeps_the_events(world: World) -> None:
    await world.connect(event_settings={"subject_template": "{name}"})
    await world.employ(MAX_ID, MAX)
    await world.deliver(booked("edOne000000000000000000000000001", "One", MAX_ID))
    await world.settle()
    response = await world.http.delete(employee_url(MAX_ID), headers=HEADERS)
    assert response.status_code == 204
    await world.settle()
    assert world.subjects(MAX) == ["One"]


async def test_removal_with_broken_credentials_reports_and_catches_up(world: World) -> None:
    await world.connect(event_settings={"subject_template": "{name}"})
    await world.employ(MAX_ID, MAX)
    await world.deliver(booked("edOne000000000000000000000000001", "One", MAX_ID))
    await world.settle()
    assert world.subjects(MAX) == ["One"]

    # The secret goes bad on Entra's side (a PUT of a wrong one would be refused up front).
    async with world.database.session_scope() as session:
        await session.execute(
            update(Connection).values(
                client_secret_encrypted=SecretBox([SECRET_KEY.encode()]).encrypt("not-the-secret")
            )
        )
    await world.settle()
    response = await world.http.delete(
        employee_url(MAX_ID), params={"remove_events": "true"}, headers=HEADERS
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["events"] == 1
    assert body["mailbox_check"]["ok"] is False
    assert body["mailbox_check"]["code"] == "secret_invalid"
    assert body["message"].startswith(
        f"The events calbridge created for {MAX_ID} (1) cannot be removed from the calendar of "
        f"{MAX} right now: The app registration's client secret is invalid."
    )
    jobs = await world.settle()
    assert not [j for j in jobs if j.state == "dead"]
    [failed] = [r for r in await world.records() if r.code == "secret_invalid"]
    assert failed.status == "error" and failed.mailbox == MAX
    assert world.subjects(MAX) == ["One"]

    # New credentials: what failed for want of them catches up.
    await world.connect(client_secret=world.secret)
    await world.settle()
    assert world.subjects(MAX) == []


async def test_changed_event_settings_update_existing_events(world: World) -> None:
    created = await world.connect()
    assert created.json()["event_settings"] == {
        "subject_template": "{name} – {customer}",
        "include_customer_contact": True,
        "reminder_minutes": 15,
        "category": "bookingtime",
        "on_cancel": "delete",
        "outlook_changes": "restore",
        "busy_subjects": False,
    }
    await world.employ(MAX_ID, MAX)
    await world.deliver(booked("edOne000000000000000000000000001", "One", MAX_ID))
    await world.settle()
    [event] = world.sandbox.control.events(MAX)
    assert event["subject"].startswith("One – ")
    assert event["reminderMinutesBeforeStart"] == 15

    settings = {"subject_template": "Booked: {name}", "reminder_minutes": 45}
    updated = await world.connect(event_settings=settings)
    assert updated.json()["event_settings"]["subject_template"] == "Booked: {name}"
    assert updated.json()["event_settings"]["category"] == "bookingtime"  # omitted: default
    await world.settle()
    [event] = world.sandbox.control.events(MAX)
    assert event["subject"] == "Booked: One"
    assert event["reminderMinutesBeforeStart"] == 45
    [update] = [r for r in await world.records("updated")]
    assert update.details is not None
    assert sorted(update.details["fields"]) == ["reminderMinutesBeforeStart", "subject"]

    # The same settings again (and no locale change): no fan-out.
    before = len(await world.records("settings_resync_queued"))
    await world.connect(event_settings=settings)
    await world.settle()
    assert len(await world.records("settings_resync_queued")) == before == 1

    # Another language changes the labels in the body.
    await world.connect(locale="de")
    await world.settle()
    [event] = world.sandbox.control.events(MAX)
    assert "Kunde:" in event["body"]["content"]


async def test_invalid_event_settings_are_refused_and_nothing_changes(world: World) -> None:
    await world.connect()
    for settings, field in (
        ({"subject_template": "{nmae}"}, "subject_template"),
        ({"reminder_minutes": -5}, "reminder_minutes"),
        ({"on_cancel": "ignore"}, "on_cancel"),
        ({"colour": "red"}, "colour"),
    ):
        response = await world.http.put(
            CONNECTION_URL,
            json={
                "tenant": world.tenant_id,
                "client_id": world.client_id,
                "event_settings": settings,
            },
            headers=HEADERS,
        )
        assert response.status_code == 422, settings
        assert any(field in e["field"] for e in response.json()["errors"]), response.json()
    current = await world.http.get(CONNECTION_URL, headers=HEADERS)
    assert current.json()["event_settings"]["subject_template"] == "{name} – {customer}"


async def test_history_speaks_the_language_the_client_asks_for(world: World) -> None:
    await world.connect(locale="de")
    await world.deliver(booked("edOne000000000000000000000000001", "One", MAX_ID))
    await world.settle()
    url = "/api/v1/sync-history"
    stored = await world.http.get(url, headers=HEADERS)
    [record] = stored.json()["items"]
    assert record["code"] == "unmapped_employee"
    assert record["message"].startswith(f"Der Mitarbeiter {MAX_ID} ist keinem Postfach")
    assert "content-language" not in stored.headers
    assert stored.headers["vary"] == "Accept-Language"

    english = await world.http.get(
        url, headers={**HEADERS, "Accept-Language": "fr-CH, en;q=0.8, de;q=0.5"}
    )
    assert english.headers["content-language"] == "en"
    assert english.json()["items"][0]["message"] == (
        f"Employee {MAX_ID} is not mapped to a mailbox; the appointment is not synced for them."
    )
    german = await world.http.get(url, headers={**HEADERS, "Accept-Language": "de-AT"})
    assert german.json()["items"][0]["message"] == record["message"]
    unknown = await world.http.get(url, headers={**HEADERS, "Accept-Language": "fr"})
    assert "content-language" not in unknown.headers
    assert unknown.json()["items"][0]["message"] == record["message"]
