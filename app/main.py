"""`create_app()`: the FastAPI app, its shared clients (built once in the lifespan), routers."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline

from app import __version__
from app.admin.metrics import router as metrics_router
from app.admin.router import MAX_BODY_BYTES as ADMIN_MAX_BODY_BYTES
from app.admin.router import PREFIX as ADMIN_PREFIX
from app.admin.router import router as admin_router
from app.bookingtime.router import router as bookingtime_router
from app.bookingtime.service import build_intake
from app.bookingtime_api import build_http_client
from app.config import Settings, get_settings, settings_warnings
from app.credentials.clients import GraphClients
from app.crypto import SecretBox, load_secret_box
from app.db import Database
from app.health import router as health_router
from app.http.limits import BodyCapMiddleware, HeaderLimitMiddleware
from app.http.problems import install_problem_handlers
from app.logs import RequestIdMiddleware
from app.notifications.intake import build_notification_intake
from app.notifications.router import router as graph_notifications_router
from app.queue.registry import JobRegistry

log = logging.getLogger(__name__)

DESCRIPTION = """
calbridge keeps Microsoft 365 (Outlook) calendars and bookingtime in step, push-driven.

* **Webhooks**: bookingtime appointment events (Standard Webhooks signatures); Microsoft Graph
  change and lifecycle notifications (`/webhooks/graph/notifications`, `/webhooks/graph/lifecycle`).
* **Admin API** under `/api/v1`: connections, employees, sync history, jobs.
  Send `Authorization: Bearer <token>` (`calbridge token create --name NAME`).
* Errors are `application/problem+json` (RFC 9457) with a stable `code`.
"""


def _telemetry_options(settings: Settings) -> dict[str, Any]:
    """FastAPI's own OpenTelemetry instrumentation (newer FastAPI versions) stays off unless the
    operator asks for it: calbridge exports its own metrics, and the lookup runs per request."""
    if settings.opentelemetry or "telemetry" not in inspect.signature(FastAPI).parameters:
        return {}
    return {"telemetry": {"tracing": False, "metrics": False, "logs": False}}


def create_app(
    settings: Settings | None = None,
    *,
    database: Database | None = None,
    secret_box: SecretBox | None = None,
    run_worker: bool = False,
    registry: JobRegistry | None = None,
) -> FastAPI:
    """Build the application. Clients passed in are used as they are (and not closed); with
    `run_worker` the job worker runs in this process (`registry` defaults to every job kind)."""
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        owned_database = database is None
        for warning in settings_warnings(settings):
            log.warning("%s", warning)
        app.state.settings = settings
        app.state.database = database or Database(settings.database_url)
        app.state.secret_box = secret_box or load_secret_box(settings)
        app.state.bookingtime_intake = build_intake(app.state.database)
        app.state.graph_notifications = build_notification_intake(
            app.state.database, app.state.secret_box
        )
        app.state.graph = GraphClients(settings)
        # One httpx client per process for bookingtime's auth server and App API.
        app.state.bookingtime = build_http_client(settings)
        worker_task: asyncio.Task[None] | None = None
        worker = None
        # New work wakes a worker of this process at once instead of at its next poll.
        app.state.wake_worker = lambda: None
        if run_worker:
            from app.queue.worker import Worker
            from app.tasks import build_registry

            job_registry = registry or build_registry(
                settings, graph=app.state.graph, secret_box=app.state.secret_box
            )
            worker = Worker(app.state.database, settings, job_registry)
            app.state.wake_worker = worker.wake
            worker_task = asyncio.create_task(worker.run(), name="calbridge-worker")
        try:
            yield
        finally:
            if worker is not None and worker_task is not None:
                worker.stop()
                with contextlib.suppress(asyncio.CancelledError):
                    await worker_task
            await app.state.graph.aclose()
            await app.state.bookingtime.aclose()
            if owned_database:
                await app.state.database.dispose()

    # /docs and /redoc serve Swagger UI and ReDoc from a package, not a CDN: they work offline.
    app = FastAPIOffline(
        title="calbridge",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        **_telemetry_options(settings),
    )
    install_problem_handlers(app)
    # The last added is the outermost: every answer, a 431 included, carries a request id.
    app.add_middleware(BodyCapMiddleware, limit=ADMIN_MAX_BODY_BYTES, prefix=ADMIN_PREFIX)
    app.add_middleware(HeaderLimitMiddleware)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health_router)
    app.include_router(metrics_router)
    app.include_router(bookingtime_router)
    app.include_router(graph_notifications_router)
    app.include_router(admin_router)
    return app
