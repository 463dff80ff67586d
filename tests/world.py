"""The worlds a behaviour test drives: the Graph sandbox (one tenant, one app registration, some
mailboxes) and calbridge's settings and Graph clients on the test's database (`GraphWorld`);
`World` adds the app and an HTTP client to it, in-process or on a real port."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, TypeVar

import httpx
from fastapi import FastAPI

from app.config import Settings
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.db import Database
from app.graph.sender import GraphHttp
from app.main import create_app
from app.models import Connection, Employee
from app.sandbox import Control, SandboxServer, ThrottleLimits
from app.tasks import build_registry
from tests.conftest import ADMIN_TOKEN, sandbox_settings
from tests.servers import free_port, serve_app


@dataclass(kw_only=True)
class GraphWorld:
    sandbox: SandboxServer
    database: Database
    settings: Settings
    secret_box: SecretBox
    graph: GraphClients
    tenant_id: str
    client_id: str
    secret: str
    users: dict[str, str]  # mailbox -> sandbox user id
    connection_id: int = field(default=0, init=False)

    @property
    def control(self) -> Control:
        return self.sandbox.control

    async def add_connection(
        self,
        organization_id: str,
        *,
        locale: str = "en",
        employees: dict[str, str] | None = None,
        **columns: Any,
    ) -> int:
        """A connection row with the sandbox app's credentials and `employees` (booking resource
        id -> mailbox), written straight to the database; becomes `connection_id`."""
        async with self.database.session_scope() as session:
            connection = Connection(
                organization_id=organization_id,
                tenant=self.tenant_id,
                client_id=self.client_id,
                client_secret_encrypted=self.secret_box.encrypt(self.secret),
                webhook_secret_encrypted=self.secret_box.encrypt("whsec"),
                locale=locale,
                **columns,
            )
            session.add(connection)
            await session.flush()
            self.connection_id = connection.id
        for resource, mailbox in (employees or {}).items():
            await self.employ(resource, mailbox)
        return self.connection_id

    async def employ(self, resource: str, mailbox: str) -> None:
        async with self.database.session_scope() as session:
            session.add(
                Employee(
                    connection_id=self.connection_id, booking_resource_id=resource, mailbox=mailbox
                )
            )


@dataclass(kw_only=True)
class World(GraphWorld):
    app: FastAPI
    http: httpx.AsyncClient


W = TypeVar("W", bound=GraphWorld)
MakeWorld = Callable[..., AbstractAsyncContextManager[Any]]


@asynccontextmanager
async def build_world(
    db_url: str,
    database: Database,
    secret_box: SecretBox,
    cls: type[W],
    *,
    seed: int | None = 11,
    limits: ThrottleLimits | None = None,
    mailboxes: Iterable[str] = (),
    app_roles: set[str] | None = None,
    serve: bool | dict[str, Any] = False,
    client: dict[str, Any] | None = None,
    run_worker: bool = False,
    graph_timeout: float | None = None,
    before_app: Callable[[Settings], object] | None = None,
    **overrides: Any,
) -> AsyncIterator[W]:
    """Start the sandbox and, when `cls` is a `World`, calbridge.

    `serve`: on a real loopback port (so Graph can call back; `public_url` points there and the
    client sends the admin token; a dict is uvicorn's config), else in-process. `client`:
    httpx.AsyncClient options. `run_worker`: the app runs its job worker, on the world's Graph
    clients; `graph_timeout`: their requests time out after so many seconds (Graph's timeout has
    no setting). `before_app(settings)` runs just before the app is made. `overrides` go to
    Settings."""
    async with SandboxServer.start(seed=seed, limits=limits) as sandbox:
        control = sandbox.control
        tenant = control.add_tenant("contoso.example")
        registration, secret = control.add_app(tenant.id, roles=app_roles)
        users = {mailbox: control.add_user(tenant.id, mailbox).id for mailbox in mailboxes}
        port = free_port() if serve else 0
        if serve:
            overrides.setdefault("public_url", f"http://127.0.0.1:{port}")
        settings = sandbox_settings(db_url, sandbox, **overrides)
        graph = GraphClients(settings)
        if graph_timeout is not None:
            default_http = graph.http
            graph.http = GraphHttp.build(settings, timeout=httpx.Timeout(graph_timeout))
            await default_http.aclose()
        parts: dict[str, Any] = {
            "sandbox": sandbox,
            "database": database,
            "settings": settings,
            "secret_box": secret_box,
            "graph": graph,
            "tenant_id": tenant.id,
            "client_id": registration.client_id,
            "secret": secret,
            "users": users,
        }
        try:
            if not issubclass(cls, World):
                yield cls(**parts)
                return
            if before_app is not None:
                before_app(settings)
            registry = build_registry(settings, graph=graph, secret_box=secret_box)
            app = create_app(
                settings,
                database=database,
                secret_box=secret_box,
                run_worker=run_worker,
                registry=registry if run_worker else None,
            )
            uvicorn = serve if isinstance(serve, dict) else {}
            async with _client(app, port, uvicorn, client or {}) as http:
                yield cls(**parts, app=app, http=http)
        finally:
            await graph.aclose()


@asynccontextmanager
async def _client(
    app: FastAPI, port: int, uvicorn: dict[str, Any], options: dict[str, Any]
) -> AsyncIterator[httpx.AsyncClient]:
    if port:
        options = {
            "base_url": f"http://127.0.0.1:{port}",
            "headers": {"Authorization": f"Bearer {ADMIN_TOKEN}"},
            "timeout": 10,
            **options,
        }
        async with serve_app(app, port=port, **{"lifespan": "on", **uvicorn}):
            async with httpx.AsyncClient(**options) as http:
                yield http
        return
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        options = {"base_url": "http://calbridge.test", **options}
        async with httpx.AsyncClient(transport=transport, **options) as http:
            yield http
