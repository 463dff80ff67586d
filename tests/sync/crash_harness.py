"""What the crash and fault tests share: the sandbox with a tenant and mailboxes, calbridge's API
in-process with a connection and employees (set up through the admin API), a script of signed
bookingtime webhooks, and the check that every calendar holds exactly the expected events."""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import and_, func, or_, select
from standardwebhooks.webhooks import Webhook

from app.config import WorkerSettings
from app.graph.odata import TAG_PROPERTY_ID
from app.models import EventMapping, Job, SyncRecord
from app.sync.keys import appointment_tag
from app.sync.settings import TranslationSettings
from app.sync.translate import translate
from tests.conftest import ADMIN_TOKEN
from tests.sync.samples import appointment
from tests.world import MakeWorld
from tests.world import World as BaseWorld

ORG = "f6CrashFault0000000000000000000a"
DOMAIN = "contoso.example"
ZONE = ZoneInfo("Europe/Berlin")
# Periodic kinds always have their next tick waiting (app.queue.repository.tick_dedupe_key).
NOT_A_TICK = or_(Job.dedupe_key.is_(None), Job.dedupe_key.not_like("periodic:%"))


async def until_true(condition: Callable[[], bool], within: float) -> bool:
    """Whether `condition` came true within `within` seconds (checked every millisecond)."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(0.001)
    return True


@dataclass(frozen=True)
class Employee:
    """A bookingtime employee (booking resource) and the mailbox it is mapped to."""

    resource_id: str
    mailbox: str
    first_name: str

    def listing(self) -> dict[str, Any]:
        return {
            "class": "BOOKING_RESOURCE",
            "id": self.resource_id,
            "type": "EMPLOYEE",
            "firstName": self.first_name,
            "lastName": "Test",
        }


def staff(count: int) -> list[Employee]:
    return [
        Employee(f"brCrashFault{i:020d}", f"staff{i}@{DOMAIN}", f"Staff{i}") for i in range(count)
    ]


@dataclass(frozen=True)
class Delivery:
    """One bookingtime webhook: its type and the appointment's whole state."""

    event_type: str
    payload: dict[str, Any]


@dataclass
class Script:
    """Phases of webhooks (each phase after the previous one) and the appointments' final state."""

    phases: list[list[Delivery]]
    final: dict[str, dict[str, Any]] = field(default_factory=dict)


def make_script(rng: random.Random, employees: list[Employee], appointments: int) -> Script:
    """Creates, then moves and edits, then cancellations and reassignments.

    Every fifth appointment has two employees (two mailboxes). About 70 % are moved, a third of
    the rest get new notes; then about 30 % are cancelled and 15 % given to another employee.
    """
    day = datetime.now(ZONE).replace(hour=0, minute=0, second=0, microsecond=0)
    creates: list[Delivery] = []
    edits: list[Delivery] = []
    finals: list[Delivery] = []
    state: dict[str, dict[str, Any]] = {}
    for index in range(appointments):
        appointment_id = f"edCrashFault{index:020d}"
        start = day + timedelta(days=7 + index % 10, hours=8 + index % 9)
        first = employees[index % len(employees)]
        listed = [first]
        if index % 5 == 0:
            listed.append(employees[(index + 1) % len(employees)])
        payload = appointment(
            id=appointment_id,
            name=f"Termin {index:03d}",
            start=start.isoformat(),
            end=(start + timedelta(minutes=45)).isoformat(),
            duration=45,
            timeZone="Europe/Berlin",
            organizationId=ORG,
            bookingResourceList=[e.listing() for e in listed],
        )
        creates.append(Delivery("appointment.created", payload))
        state[appointment_id] = payload

    for appointment_id, payload in state.items():
        roll = rng.random()
        if roll < 0.7:
            start = datetime.fromisoformat(payload["start"]) + timedelta(
                days=rng.randint(1, 3), hours=rng.randint(-2, 2)
            )
            moved = {
                **payload,
                "start": start.astimezone(ZONE).isoformat(),
                "end": (start + timedelta(minutes=45)).astimezone(ZONE).isoformat(),
                "moved": True,
            }
            edits.append(Delivery("appointment.moved", moved))
            state[appointment_id] = moved
        elif roll < 0.8:
            edited = {**payload, "notes": f"Neue Notiz {rng.randint(1, 999)}"}
            edits.append(Delivery("appointment.updated", edited))
            state[appointment_id] = edited

    for appointment_id, payload in state.items():
        roll = rng.random()
        if roll < 0.3:
            canceled = {**payload, "canceled": True}
            finals.append(Delivery("appointment.canceled", canceled))
            state[appointment_id] = canceled
        elif roll < 0.45:
            other = rng.choice(employees)
            given = {**payload, "bookingResourceList": [other.listing()]}
            finals.append(Delivery("appointment.updated", given))
            state[appointment_id] = given
    rng.shuffle(edits)
    rng.shuffle(finals)
    return Script(phases=[creates, edits, finals], final=state)


@dataclass(frozen=True)
class Expected:
    appointment_id: str
    resource_id: str
    subject: str
    start: datetime


def expected_calendars(script: Script, employees: list[Employee]) -> dict[str, dict[str, Expected]]:
    """mailbox → appointment tag → the one event it must hold."""
    mailbox_of = {e.resource_id: e.mailbox for e in employees}
    calendars: dict[str, dict[str, Expected]] = {e.mailbox: {} for e in employees}
    for appointment_id, payload in script.final.items():
        if payload.get("canceled"):
            continue
        # The connection is made with the default event settings, in English.
        body = translate(payload, TranslationSettings(locale="en"))
        start = datetime.fromisoformat(payload["start"]).astimezone(UTC)
        for listed in payload["bookingResourceList"]:
            tag = appointment_tag(ORG, appointment_id, listed["id"])
            calendars[mailbox_of[listed["id"]]][tag] = Expected(
                appointment_id, listed["id"], body.subject, start
            )
    return calendars


@dataclass
class World(BaseWorld):
    """The sandbox, calbridge's API in-process (signed webhooks in, admin API) and its database."""

    employees: list[Employee] = field(default_factory=list)
    webhook_secret: str = ""
    sent: int = 0

    async def send(self, webhook: Delivery) -> None:
        """One signed delivery through the real intake; it must be accepted."""
        self.sent += 1
        now = datetime.now(UTC)
        body = json.dumps(
            {
                "type": webhook.event_type,
                "timestamp": now.isoformat(),
                "data": {"organizationId": ORG, "appointment": webhook.payload},
            }
        )
        msg_id = f"msg_crashfault_{self.sent:05d}"
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(self.webhook_secret).sign(msg_id, now, body),
        }
        response = await self.http.post(
            f"/webhooks/bookingtime/{ORG}", content=body, headers=headers
        )
        assert response.status_code == 202, (
            f"webhook {msg_id}: {response.status_code} {response.text}"
        )

    async def send_all(self, webhooks: Iterable[Delivery], *, pace: float = 0.0) -> None:
        for webhook in webhooks:
            await self.send(webhook)
            if pace:
                await asyncio.sleep(pace)

    def graph_requests_in_flight(self) -> int:
        """Requests calbridge has in the sandbox's mailboxes right now."""
        throttle = self.sandbox.control.throttle
        return sum(throttle.in_flight(user_id) for user_id in self.users.values())

    async def job_states(self) -> dict[str, int]:
        """Jobs per state, the ticks of periodic kinds (one always waits) left out."""
        query = select(Job.state, func.count()).where(NOT_A_TICK).group_by(Job.state)
        async with self.database.session() as session:
            return {state: count for state, count in (await session.execute(query)).all()}

    async def retried_attempts(self) -> int:
        """Attempts beyond each job's first."""
        query = select(func.sum(Job.attempts - 1)).where(Job.attempts > 1)
        async with self.database.session() as session:
            return int(await session.scalar(query) or 0)

    async def unfinished_jobs(self) -> list[Job]:
        """Jobs that did not end `done`, periodic ticks still waiting aside."""
        waiting_tick = and_(~NOT_A_TICK, Job.state == "pending")
        query = select(Job).where(Job.state != "done", ~waiting_tick).order_by(Job.id)
        async with self.database.session() as session:
            return list(await session.scalars(query))

    async def drain(self, *, within: float, context: str = "") -> None:
        """Wait until no job is pending or running; then none may be dead or failed."""
        deadline = time.monotonic() + within
        while True:
            states = await self.job_states()
            if not states.get("pending") and not states.get("running"):
                break
            if time.monotonic() > deadline:
                stuck = [
                    f"job {j.id} {j.kind} {j.state} attempts={j.attempts} run_at={j.run_at} "
                    f"last_error={j.last_error}"
                    for j in await self.unfinished_jobs()
                ]
                raise AssertionError(
                    f"{context}queue not drained within {within:.0f} s: {states}\n"
                    + "\n".join(stuck[:20])
                )
            await asyncio.sleep(0.1)
        broken = [j for j in await self.unfinished_jobs() if j.state in ("dead", "failed")]
        assert not broken, f"{context}jobs that did not succeed:\n" + "\n".join(
            f"job {j.id} {j.kind} {j.args} {j.state} after {j.attempts} attempts: {j.last_error}"
            for j in broken
        )

    async def mappings(self) -> list[EventMapping]:
        async with self.database.session() as session:
            return list(await session.scalars(select(EventMapping).order_by(EventMapping.id)))

    async def story(self, appointment_id: str) -> list[str]:
        """What happened to one appointment, for a failure message: the sandbox's writes of its
        events (oldest first) and its sync history."""
        lines: list[str] = []
        mailbox_of = {user_id: mailbox for mailbox, user_id in self.users.items()}
        for write in self.sandbox.control.writes().writes:
            if any(appointment_id in value for value in write.extended.values()):
                lines.append(
                    f"  write #{write.sequence} {write.change_type} in "
                    f"{mailbox_of.get(write.user_id, write.user_id)}: {write.event_id[-12:]} "
                    f"txid {write.transaction_id} start {write.start}"
                )
        query = (
            select(SyncRecord)
            .where(SyncRecord.appointment_id == appointment_id)
            .order_by(SyncRecord.id)
        )
        async with self.database.session() as session:
            for record in await session.scalars(query):
                lines.append(
                    f"  history {record.created_at:%H:%M:%S.%f} job {record.job_id} "
                    f"{record.mailbox} {record.action} {record.status} {record.code} "
                    f"{record.details}"
                )
        return lines


def _tag(event: dict[str, Any]) -> str | None:
    for prop in event.get("singleValueExtendedProperties") or []:
        if str(prop.get("id", "")).casefold() == TAG_PROPERTY_ID.casefold():
            return str(prop["value"])
    return None


def _start(event: dict[str, Any]) -> datetime | None:
    start = event.get("start") or {}
    value, zone = start.get("dateTime"), start.get("timeZone")
    if not value or zone != "UTC":
        return None
    return datetime.fromisoformat(value[:26]).replace(tzinfo=UTC)


def _describe(event: dict[str, Any]) -> str:
    return (
        f"{event.get('subject')!r} at {event.get('start', {}).get('dateTime')} "
        f"(id …{str(event.get('id'))[-12:]}, transactionId {event.get('transactionId')})"
    )


async def calendar_problems(world: World, script: Script) -> list[str]:
    """Every way the mailboxes (and calbridge's mapping rows) differ from the script's final
    state, each naming the mailbox and the appointment; empty when they match."""
    expected = expected_calendars(script, world.employees)
    problems: list[str] = []
    events_by_tag: dict[str, dict[str, dict[str, Any]]] = {}
    for mailbox, wanted in expected.items():
        events = world.sandbox.control.events(mailbox)
        by_tag: dict[str | None, list[dict[str, Any]]] = {}
        by_txid: dict[str, list[dict[str, Any]]] = {}
        by_subject_start: dict[tuple[str, datetime | None], list[dict[str, Any]]] = {}
        for event in events:
            by_tag.setdefault(_tag(event), []).append(event)
            if event.get("transactionId"):
                by_txid.setdefault(event["transactionId"], []).append(event)
            key = (str(event.get("subject")), _start(event))
            by_subject_start.setdefault(key, []).append(event)
        for event in by_tag.pop(None, []):
            problems.append(
                f"mailbox {mailbox}: an event without calbridge's tag: {_describe(event)}"
            )
        for txid, same in by_txid.items():
            if len(same) > 1:
                problems.append(
                    f"mailbox {mailbox}: transactionId {txid} on {len(same)} events: "
                    + "; ".join(_describe(e) for e in same)
                )
        for (subject, start), same in by_subject_start.items():
            if len(same) > 1:
                problems.append(
                    f"mailbox {mailbox}: {len(same)} events {subject!r} at {start}: "
                    + "; ".join(_describe(e) for e in same)
                )
        for tag, found in by_tag.items():
            assert tag is not None
            want = wanted.get(tag)
            if want is None:
                _, appointment_id, resource_id = [*tag.split(":"), "?", "?"][:3]
                problems.append(
                    f"mailbox {mailbox}: appointment {appointment_id} (employee {resource_id}) "
                    f"is cancelled or not this employee's, yet has {len(found)} event(s): "
                    + "; ".join(_describe(e) for e in found)
                )
                continue
            if len(found) > 1:
                problems.append(
                    f"mailbox {mailbox}: appointment {want.appointment_id} (employee "
                    f"{want.resource_id}) has {len(found)} events, duplicated: "
                    + "; ".join(_describe(e) for e in found)
                )
            for event in found:
                if event.get("subject") != want.subject or _start(event) != want.start:
                    problems.append(
                        f"mailbox {mailbox}: appointment {want.appointment_id} should be "
                        f"{want.subject!r} at {want.start:%Y-%m-%dT%H:%M}Z, is {_describe(event)}"
                    )
        for tag, want in wanted.items():
            if tag not in by_tag:
                problems.append(
                    f"mailbox {mailbox}: appointment {want.appointment_id} (employee "
                    f"{want.resource_id}, {want.subject!r} at {want.start:%Y-%m-%dT%H:%M}Z) is "
                    "missing: lost"
                )
        events_by_tag[mailbox] = {tag: found[0] for tag, found in by_tag.items() if tag}

    # What calbridge believes must match what is there, or the next change would go astray.
    live: dict[tuple[str, str], list[EventMapping]] = {}
    for row in await world.mappings():
        if not row.deleted:
            live.setdefault((row.appointment_id, row.booking_resource_id), []).append(row)
    mailbox_of = {e.resource_id: e.mailbox for e in world.employees}
    for (appointment_id, resource_id), rows in live.items():
        mailbox = mailbox_of[resource_id]
        tag = appointment_tag(ORG, appointment_id, resource_id)
        if tag not in expected[mailbox]:
            problems.append(
                f"mailbox {mailbox}: appointment {appointment_id} has {len(rows)} live mapping "
                "row(s) but should have no event"
            )
            continue
        event = events_by_tag[mailbox].get(tag)
        ids = [row.graph_event_id for row in rows]
        if len(rows) != 1 or event is None or ids != [event["id"]] or rows[0].mailbox != mailbox:
            problems.append(
                f"mailbox {mailbox}: appointment {appointment_id}: live mapping rows "
                f"{[(r.mailbox, r.generation, r.graph_event_id) for r in rows]} do not point at "
                f"its one event ({event and event['id']})"
            )
    for mailbox, wanted in expected.items():
        for want in wanted.values():
            if (want.appointment_id, want.resource_id) not in live:
                problems.append(
                    f"mailbox {mailbox}: appointment {want.appointment_id} has no live mapping row"
                )
    return problems


@asynccontextmanager
async def running_world(
    make_world: MakeWorld,
    *,
    mailboxes: int,
    seed: int | None = None,
    worker: WorkerSettings | None = None,
    graph_timeout: float = 30.0,
) -> AsyncIterator[World]:
    """The sandbox (tenant, app, one mailbox per employee) and calbridge's API in-process, with
    the connection and employees created through the admin API.

    With `worker` settings a job worker runs in this process too (as `calbridge serve` runs
    it), its Graph calls timing out after `graph_timeout` seconds; without, none runs here.
    """
    employees = staff(mailboxes)
    async with make_world(
        World,
        seed=seed,
        mailboxes=[e.mailbox for e in employees],
        client={"headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"}},
        run_worker=worker is not None,
        graph_timeout=graph_timeout if worker is not None else None,
        worker=worker or WorkerSettings(),
    ) as world:
        world.employees = employees
        response = await world.http.put(
            f"/api/v1/connections/{ORG}",
            json={
                "tenant": world.tenant_id,
                "client_id": world.client_id,
                "client_secret": world.secret,
                "locale": "en",
            },
        )
        assert response.status_code in (200, 201), response.text
        world.webhook_secret = response.json()["webhook_secret"]
        for employee in employees:
            response = await world.http.put(
                f"/api/v1/connections/{ORG}/employees/{employee.resource_id}",
                json={"mailbox": employee.mailbox},
            )
            assert response.status_code in (200, 201), response.text
            assert response.json()["mailbox_check"]["ok"], response.text
        yield world
