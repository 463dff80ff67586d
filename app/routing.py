"""Routing shared by the webhook endpoints: a route that hands its endpoint the raw request, and
reading a raw body with a size cap."""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any

from fastapi.routing import APIRoute
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from app.problems import ProblemError


class RawRequestRoute(APIRoute):
    """A route documented from its declaration (parameters, body, responses), whose endpoint is
    called with the request alone: `endpoint(request, **path_params)`.

    Webhooks must be verified on their raw bytes before anything parses them, so FastAPI's own
    parameter solving, body handling and response checks would only cost time: about a quarter
    of what the intake spends on a request before its database write. Errors still reach the
    app's exception handlers.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        endpoint = self.endpoint

        async def handle(request: Request) -> Response:
            response: Response = await endpoint(request, **request.path_params)
            return response

        return handle


def payload_too_large(limit: int, what: str) -> ProblemError:
    """The 413 problem of a body over `limit` bytes; `what` names it (`webhook`, ...)."""
    return ProblemError(
        413,
        "payload_too_large",
        f"The {what} body is too large",
        detail=f"bodies are limited to {limit} bytes",
    )


def refuse_declared_oversize(request: Request, limit: int, what: str) -> None:
    """413 at once when the declared Content-Length is over `limit`, before reading anything."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise payload_too_large(limit, what)


async def read_body(request: Request, limit: int, what: str) -> bytes:
    """The raw body, never reading past `limit` bytes (chunked bodies without a length too)."""
    refuse_declared_oversize(request, limit, what)
    chunks: list[bytes] = []
    size = 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise payload_too_large(limit, what)
            chunks.append(chunk)
    except ClientDisconnect as exc:
        raise ProblemError(
            400, "incomplete_body", "The body ended early", detail="the client disconnected"
        ) from exc
    return b"".join(chunks)
