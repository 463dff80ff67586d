"""A calbridge server (real uvicorn on loopback, the app of create_app) that the Graph sandbox
can call back, a connection with one mapped mailbox, and the subscription service bound to the
sandbox over HTTPS: what the subscription and notification tests share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, TypeVar

import httpx
from sqlalchemy import select

from app.config import Settings
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.db import Database
from app.main import create_app
from app.models import Connection, Employee, Job, Subscription, SyncRecord
from app.notifications.subscriptions import Subscriber
from app.sandbox import Control, SandboxServer, ThrottleLimits
from tests.conftest import ADMIN_TOKEN, SECRET_KEY, sandbox_settings
from tests.servers import free_port, serve_app

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

T = TypeVar("T")


@dataclass
class World:
    sandbox: SandboxServer
    database: Database
    settings: Settings
    secret_box: SecretBox
    graph: GraphClients
    service: Subscriber
    connection_id: int
    tenant_id: str
    max_id: str
    erika_id: str
    http: httpx.AsyncClient  # to the calbridge server, admin token set
    app: Any

    @property
    def control(self) -> Control:
        return self.sandbox.control

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

    async def employ(self, resource: str, mailbox: str) -> None:
        async with self.database.session_scope() as session:
            session.add(
                Employee(
                    connection_id=self.connection_id, booking_resource_id=resource, mailbox=mailbox
                )
            )

    def intake(self) -> Any:
        return self.app.state.graph_notifications


@asynccontextmanager
async def make_world(
    db_url: str,
    database: Database,
    *,
    public: bool = True,
    app_roles: set[str] | None = None,
    **overrides: Any,
) -> AsyncIterator[World]:
    limits = ThrottleLimits(concurrency=4, requests_per_window=10_000)
    async with SandboxServer.start(seed=11, limits=limits) as sandbox:
        control = sandbox.control
        tenant = control.add_tenant("contoso.example")
        graph_app, secret = control.add_app(tenant.id, roles=app_roles)
        max_user = control.add_user(tenant.id, MAX_MAILBOX)
        erika = control.add_user(tenant.id, ERIKA_MAILBOX)
        port = free_port()
        settings = sandbox_settings(
            db_url, sandbox, public_url=f"http://127.0.0.1:{port}" if public else None, **overrides
        )
        box = SecretBox([SECRET_KEY.encode()])
        async with database.session_scope() as session:
            connection = Connection(
                organization_id=ORG,
                tenant=tenant.id,
                client_id=graph_app.client_id,
                client_secret_encrypted=box.encrypt(secret),
                webhook_secret_encrypted=box.encrypt("whsec"),
                locale="en",
            )
            session.add(connection)
            await session.flush()
            session.add(
                Employee(connection_id=connection.id, booking_resource_id=MAX, mailbox=MAX_MAILBOX)
            )
            connection_id = connection.id
        app = create_app(settings, database=database, secret_box=box)
        graph = GraphClients(settings)
        try:
            async with _serve_on(app, port) as base_url:
                headers = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
                async with httpx.AsyncClient(
                    base_url=base_url, headers=headers, timeout=10
                ) as http:
                    yield World(
                        sandbox=sandbox,
                        database=database,
                        settings=settings,
                        secret_box=box,
                        graph=graph,
                        service=Subscriber(database, settings, graph, box),
                        connection_id=connection_id,
                        tenant_id=tenant.id,
                        max_id=max_user.id,
                        erika_id=erika.id,
                        http=http,
                        app=app,
                    )
        finally:
            await graph.aclose()


@asynccontextmanager
async def _serve_on(app: Any, port: int) -> AsyncIterator[str]:
    async with serve_app(app, port=port, lifespan="on"):
        yield f"http://127.0.0.1:{port}"


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
