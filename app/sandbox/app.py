"""Assembles the sandbox's ASGI app: routers, and the handlers that turn raised errors into the
exact Graph or Entra bodies."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi_offline import FastAPIOffline
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp

from app.sandbox import (
    batch,
    calendars,
    control_router,
    delta,
    entra,
    events,
    subscriptions,
    users,
)
from app.sandbox.asgi import CONTROL_PREFIX, SandboxASGI
from app.sandbox.bookingtime import router as bookingtime
from app.sandbox.bookingtime.envelope import is_bookingtime
from app.sandbox.control import Control
from app.sandbox.errors import EntraError, GraphError, entra_error_body, graph_error_body
from app.sandbox.pipeline import Dropped
from app.sandbox.runtime import Runtime

CONTROL_DESCRIPTION = """
The sandbox emulates Microsoft Entra (tokens) and Microsoft Graph (calendars, events, delta,
subscriptions, `$batch`), and bookingtime's auth server and App API (under `/bookingtime`), for
calbridge's tests, benchmarks and demo. This control API, under `/_sandbox`, sets up and steers
it from another process: tenants, apps and users, the clock, injected faults, what a person does
in Outlook or in bookingtime, and the logs of writes and notification deliveries.
It has no authentication: keep the sandbox on loopback.
"""


def create_app(runtime: Runtime) -> ASGIApp:
    # Only the control API is documented here (at /_sandbox/docs, its assets served from a
    # package): the Graph and Entra routes follow Microsoft's own documentation.
    app = FastAPIOffline(
        title="calbridge sandbox: control API",
        description=CONTROL_DESCRIPTION,
        openapi_url=f"{CONTROL_PREFIX}/openapi.json",
        docs_url=f"{CONTROL_PREFIX}/docs",
        redoc_url=None,
        static_url=f"{CONTROL_PREFIX}/static-docs",
    )
    app.state.runtime = runtime
    app.state.control = Control(runtime)
    app.include_router(control_router.router)
    for emulated in (entra, users, calendars, events, delta, subscriptions, batch):
        app.include_router(emulated.router, include_in_schema=False)
    bookingtime.install(app)

    def graph_error(request: Request, error: GraphError) -> JSONResponse:
        body = graph_error_body(
            error,
            now=runtime.state.clock.now(),
            request_id=request.scope.get("sandbox.request_id", ""),
            client_request_id=request.scope.get("sandbox.client_request_id"),
        )
        return JSONResponse(body, status_code=error.status, headers=error.headers)

    async def on_graph_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, GraphError)
        return graph_error(request, exc)

    async def on_entra_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, EntraError)
        return JSONResponse(
            entra_error_body(exc, now=runtime.state.clock.now()),
            status_code=exc.status,
            headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
            media_type="application/json; charset=utf-8",
        )

    async def on_dropped(request: Request, exc: Exception) -> Response:
        return Response(status_code=499)  # never reaches the client: the connection is gone

    async def on_http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if request.url.path.startswith(CONTROL_PREFIX):
            return JSONResponse({"detail": exc.detail}, status_code=exc.status_code)
        if is_bookingtime(request.url.path):
            return bookingtime.http_failure(request, exc)
        if exc.status_code == 405:
            error = GraphError(
                405,
                "Request_BadRequest",
                f"The HTTP method '{request.method}' is not allowed for this resource.",
            )
        else:
            segment = request.url.path.rstrip("/").rsplit("/", 1)[-1]
            error = GraphError(
                400, "BadRequest", f"Resource not found for the segment '{segment}'."
            )
        return graph_error(request, error)

    async def on_validation_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        if is_bookingtime(request.url.path):
            return bookingtime.validation_failure(request, exc)
        return JSONResponse({"detail": exc.errors()}, status_code=422)

    app.add_exception_handler(GraphError, on_graph_error)
    app.add_exception_handler(EntraError, on_entra_error)
    app.add_exception_handler(Dropped, on_dropped)
    app.add_exception_handler(HTTPException, on_http_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    return SandboxASGI(app, runtime)
