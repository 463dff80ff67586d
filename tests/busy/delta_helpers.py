"""A calbridge connection wired to the Graph sandbox over HTTPS for the delta-sync and busy tests:
one mailbox mapped, helpers to run sync.appointment and sync.mailbox and to act as a person in
Outlook."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from app.busy.service import DeltaOutcome, PageHook, sync_mailbox_impl
from app.models import Appointment, BusyBlock, Connection, EventMapping, Job, SyncRecord
from app.sandbox import ThrottleLimits
from app.sync.service import sync_appointment_impl
from tests.sync.samples import MAX, ORG, appointment
from tests.world import GraphWorld, MakeWorld

MAX_MAILBOX = "max@contoso.example"
APPOINTMENT = "edR2mX7kP9qL4vN8sT3wY6zB1cF5hJ0a"
#: The sample appointment is on 2025-06-02; delta windows are taken from this "now".
NOW = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def outlook_event(
    subject: str, start: str, end: str, *, zone: str = "UTC", **extra: Any
) -> dict[str, Any]:
    """A create body as a person's Outlook would send it."""
    return {
        "subject": subject,
        "start": {"dateTime": start, "timeZone": zone},
        "end": {"dateTime": end, "timeZone": zone},
        **extra,
    }


@dataclass
class World(GraphWorld):
    """The shared world without the app: a connection with Max mapped."""

    @property
    def user_id(self) -> str:
        return self.users[MAX_MAILBOX]

    async def delta(
        self,
        *,
        full: bool = False,
        page_size: int | None = None,
        after_commit: PageHook | None = None,
        now: datetime = NOW,
    ) -> DeltaOutcome:
        return await sync_mailbox_impl(
            database=self.database,
            settings=self.settings,
            secret_box=self.secret_box,
            graph=self.graph,
            connection_id=self.connection_id,
            mailbox=MAX_MAILBOX,
            full=full,
            now=now,
            page_size=page_size,
            after_commit=after_commit,
        )

    async def sync(self, *, force: bool = False) -> None:
        await sync_appointment_impl(
            database=self.database,
            settings=self.settings,
            secret_box=self.secret_box,
            graph=self.graph,
            connection_id=self.connection_id,
            appointment_id=APPOINTMENT,
            force=force,
        )

    async def run_queued_syncs(self) -> int:
        """Run the pending sync.appointment jobs as the worker would (then mark them done)."""
        jobs = await self.pending_jobs("sync.appointment")
        for job in jobs:
            await self.sync(force=job.args.get("force") is True)
            async with self.database.session_scope() as session:
                row = await session.get(Job, job.id)
                assert row is not None
                row.state = "done"
        return len(jobs)

    async def store(self, payload: dict[str, Any] | None = None) -> None:
        payload = payload if payload is not None else appointment()
        async with self.database.session_scope() as session:
            row = await session.scalar(
                select(Appointment).where(Appointment.appointment_id == APPOINTMENT)
            )
            if row is None:
                row = Appointment(
                    connection_id=self.connection_id,
                    appointment_id=APPOINTMENT,
                    event_at=datetime.now(UTC),
                    event_type="appointment.created",
                    payload=payload,
                )
                session.add(row)
            row.payload = payload
            row.canceled = payload.get("canceled") is True

    async def set_event_settings(self, **values: Any) -> None:
        async with self.database.session_scope() as session:
            connection = await session.get(Connection, self.connection_id)
            assert connection is not None
            connection.event_settings = {**(connection.event_settings or {}), **values}

    async def rows(self, model: Any) -> list[Any]:
        async with self.database.session_scope() as session:
            return list(await session.scalars(select(model).order_by(model.id)))

    async def blocks(self) -> list[BusyBlock]:
        rows: list[BusyBlock] = await self.rows(BusyBlock)
        return sorted(rows, key=lambda b: (b.start_at, b.graph_event_id))

    async def mapping(self) -> EventMapping:
        live = [row for row in await self.rows(EventMapping) if not row.deleted]
        assert len(live) == 1, live
        row: EventMapping = live[0]
        return row

    async def records(self, code_prefix: str = "outlook_") -> list[SyncRecord]:
        return [r for r in await self.rows(SyncRecord) if r.code.startswith(code_prefix)]

    async def pending_jobs(self, kind: str) -> list[Job]:
        return [j for j in await self.rows(Job) if j.kind == kind and j.state == "pending"]

    def events(self) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = self.control.events(MAX_MAILBOX)
        return events

    def write_count(self) -> int:
        return len(self.control.writes().writes)

    def expire_delta_tokens(self) -> None:
        """Graph forgets the mailbox's delta tokens: the next use of one gets 410."""
        self.sandbox.runtime.delta.expire(self.user_id)


@asynccontextmanager
async def delta_world(
    make_world: MakeWorld, event_settings: dict[str, Any] | None = None
) -> AsyncIterator[World]:
    limits = ThrottleLimits(concurrency=4, requests_per_window=10_000)
    async with make_world(World, seed=7, limits=limits, mailboxes=[MAX_MAILBOX]) as world:
        await world.add_connection(ORG, employees={MAX: MAX_MAILBOX}, event_settings=event_settings)
        yield world
