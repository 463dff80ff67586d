"""A calbridge server (real uvicorn on loopback, the app of create_app) that the Graph sandbox
can call back, a connection with one mapped mailbox, and the subscription service bound to the
sandbox over HTTPS: what the subscription and notification tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import select

from app.models import Job, Subscription, SyncRecord
from app.notifications.subscriptions import Subscriber
from app.sandbox import ThrottleLimits
from tests.world import MakeWorld
from tests.world import World as BaseWorld

ORG = "f6SubsOrganisation00000000000000"
MAX = "brMax000000000000000000000000000"
ERIKA = "brErika0000000000000000000000000"
MAX_MAILBOX = "max@contoso.example"
ERIKA_MAILBOX = "erika@contoso.example"
WAIT = 10.0
EVENT = {
    "subject": "Standup",
    "start": {"dateTime": "2030-01-07T09:00:00", "timeZone": "UTC"},
    "end": {"dateTime": "2030-01-07T09:15:00", "timeZone": "UTC"},
}


@dataclass
class World(BaseWorld):
    """The shared world, served on a real port, with Max's connection and the subscriber."""

    @cached_property
    def service(self) -> Subscriber:
        return Subscriber(self.database, self.settings, self.graph, self.secret_box)

    @property
    def max_id(self) -> str:
        return self.users[MAX_MAILBOX]

    @property
    def erika_id(self) -> str:
        return self.users[ERIKA_MAILBOX]

    async def ensure(
        self, mailbox: str = MAX_MAILBOX, *, recreate: bool = False, **kw: Any
    ) -> None:
        await self.service.ensure(
            connection_id=self.connection_id,
            mailbox=mailbox,
            recreate=recreate,
            now=kw.pop("now", None) or self.control.clock.now(),
            **kw,
        )

    async def renew(self, mailbox: str = MAX_MAILBOX, **kw: Any) -> None:
        kw.setdefault("now", self.control.clock.now())
        await self.service.renew(connection_id=self.connection_id, mailbox=mailbox, **kw)

    async def subscription(self, mailbox: str = MAX_MAILBOX) -> Subscription | None:
        async with self.database.session() as session:
            row: Subscription | None = await session.scalar(
                select(Subscription).where(Subscription.mailbox == mailbox)
            )
            return row

    async def jobs(self, kind: str | None = None, state: str | None = "pending") -> list[Job]:
        query = select(Job).order_by(Job.id)
        if kind is not None:
            query = query.where(Job.kind == kind)
        if state is not None:
            query = query.where(Job.state == state)
        async with self.database.session() as session:
            return list(await session.scalars(query))

    async def clear_jobs(self) -> None:
        async with self.database.session_scope() as session:
            for job in await session.scalars(select(Job)):
                await session.delete(job)

    async def records(self) -> list[SyncRecord]:
        async with self.database.session() as session:
            return list(await session.scalars(select(SyncRecord).order_by(SyncRecord.id)))

    def intake(self) -> Any:
        return self.app.state.graph_notifications


@asynccontextmanager
async def subs_world(make_world: MakeWorld, **options: Any) -> AsyncIterator[World]:
    limits = ThrottleLimits(concurrency=4, requests_per_window=10_000)
    async with make_world(
        World, limits=limits, mailboxes=[MAX_MAILBOX, ERIKA_MAILBOX], serve=True, **options
    ) as world:
        await world.add_connection(ORG, employees={MAX: MAX_MAILBOX})
        yield world


def notification(
    sub_id: str, client_state: str, resource: str, *, change: str = "updated"
) -> dict[str, Any]:
    return {
        "id": "lsgTZMr9KwAAA",
        "subscriptionId": sub_id,
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "clientState": client_state,
        "changeType": change,
        "resource": resource,
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": "AAMk="},
    }


def lifecycle(sub_id: str, client_state: str, event: str) -> dict[str, Any]:
    return {
        "subscriptionId": sub_id,
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "clientState": client_state,
        "lifecycleEvent": event,
    }
