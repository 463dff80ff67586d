"""The webhook lane: the raw-request webhook routes served ahead of FastAPI's router and middleware.

Webhooks are the hot path (bookingtime bursts, Graph notification storms). FastAPI's routing walks
every route and its middleware stack wraps every message, which together cost about as much as a
`/healthz` answer, on every delivery. The lane matches the few `RawRequestRoute` routes itself and
does for them exactly what the stack would have: the header limit (431), a request id (log context
and `X-Request-ID`), and the app's own exception handlers for errors. Every other request, and a
webhook path with another method (405), goes down the stack as before. The routes stay registered
with FastAPI, which documents them.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI
from starlette.convertors import StringConvertor
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from app import logs
from app.routing import RawRequestRoute, headers_too_large

Endpoint = Callable[..., Awaitable[Response]]
ExceptionHandler = Callable[[Request, Exception], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class _LaneRoute:
    method: str
    path: re.Pattern[str]
    endpoint: Endpoint


def lane_routes(routes: Iterable[BaseRoute]) -> list[_LaneRoute]:
    """The raw-request routes among `routes` (a router included without a prefix)."""
    found = []
    for route in routes:
        if isinstance(route, RawRequestRoute):
            # Path parameters are plain strings (StringConvertor) on every webhook route: the
            # lane hands over the matched text as FastAPI would.
            if not all(isinstance(c, StringConvertor) for c in route.param_convertors.values()):
                raise ValueError(f"{route.path}: the webhook lane takes string parameters only")
            for method in route.methods or ():
                found.append(_LaneRoute(method, route.path_regex, route.endpoint))
    return found


class WebhookLane:
    """Pure ASGI, outermost: dispatches `routes` directly, everything else to `app`.

    `handlers` is the app's exception-handler map (`app.exception_handlers`), looked up by the
    error's class hierarchy, so a webhook's problem documents are the ones the stack would send.
    """

    def __init__(
        self,
        app: ASGIApp,
        routes: list[_LaneRoute],
        handlers: dict[Any, Callable[..., Any]],
    ) -> None:
        self.app = app
        self.routes = routes
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            path, method = scope["path"], scope["method"]
            for route in self.routes:
                if route.method == method:
                    match = route.path.match(path)
                    if match is not None:
                        await self._serve(route, match.groupdict(), scope, receive, send)
                        return
        await self.app(scope, receive, send)

    async def _serve(
        self,
        route: _LaneRoute,
        params: dict[str, str],
        scope: Scope,
        receive: Receive,
        send: Send,
    ) -> None:
        request_id = logs.request_id_of(scope)
        token = logs.enter_request(request_id)
        try:
            response = headers_too_large(scope)
            if response is None:
                scope["path_params"] = params
                request = Request(scope, receive)
                try:
                    response = await route.endpoint(request, **params)
                except Exception as exc:
                    response = await self._handle(request, exc)
            response.raw_headers.append((logs.REQUEST_ID_HEADER, request_id.encode("ascii")))
            await response(scope, receive, send)
        finally:
            logs.leave_request(token)

    async def _handle(self, request: Request, exc: Exception) -> Response:
        for cls in type(exc).__mro__:
            handler = self.handlers.get(cls)
            if handler is not None:
                response: Response = await handler(request, exc)
                return response
        raise exc  # no handler at all: the server's own 500, as without the lane


def install_webhook_lane(app: FastAPI, routers: Iterable[APIRouter]) -> None:
    """Put the lane outside `app`'s whole stack, for the raw-request routes of `routers` (each
    also included in `app`, without a prefix, so FastAPI documents them)."""
    routes = [route for router in routers for route in lane_routes(router.routes)]
    build: Callable[[], ASGIApp] = app.build_middleware_stack

    def build_with_lane() -> ASGIApp:
        return WebhookLane(build(), routes, app.exception_handlers)

    app.build_middleware_stack = build_with_lane  # type: ignore[method-assign]
