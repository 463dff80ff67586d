"""Body and header caps: reading a raw body with a size cap, the same cap for bodies FastAPI
reads (`BodyCapMiddleware`), and the header limit every request meets (`HeaderLimitMiddleware`)."""

from __future__ import annotations

from fastapi import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.http.problems import ProblemError, problem_response


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


class BodyCapMiddleware:
    """413 `payload_too_large` for a body over `limit` bytes on paths under `prefix`.

    For routes whose body FastAPI reads itself (the admin API): it reads the whole body before
    any dependency runs, so without a cap an anonymous client could make it buffer anything. A
    declared oversize is answered at once; a longer stream stops at the cap (FastAPI passes an
    HTTPException raised while reading on to the app's handlers).
    """

    def __init__(self, app: ASGIApp, *, limit: int, prefix: str) -> None:
        self.app = app
        self.limit = limit
        self.prefix = prefix

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(self.prefix):
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        try:
            refuse_declared_oversize(request, self.limit, "request")
        except ProblemError as exc:
            response = problem_response(
                request, status=exc.status, code=exc.code, title=exc.title, detail=exc.detail
            )
            await response(scope, receive, send)
            return
        size = 0

        async def capped() -> Message:
            nonlocal size
            message = await receive()
            size += len(message.get("body", b""))
            if size > self.limit:
                raise HTTPException(
                    413, f"bodies are limited to {self.limit} bytes", {"Connection": "close"}
                )
            return message

        await self.app(scope, capped, send)


# No client of calbridge sends more than a few dozen short headers (Graph, bookingtime, admin
# tools); uvicorn's default parser sets no limit of its own.
MAX_HEADER_COUNT = 100
MAX_HEADER_BYTES = 32 * 1024


def headers_too_large(scope: Scope) -> Response | None:
    """The 431 `headers_too_large` answer (closing the connection) for a request with more than
    MAX_HEADER_COUNT headers or more than MAX_HEADER_BYTES of them; None for any other."""
    headers = scope["headers"]
    if len(headers) <= MAX_HEADER_COUNT and (
        sum(len(name) + len(value) for name, value in headers) <= MAX_HEADER_BYTES
    ):
        return None
    return problem_response(
        Request(scope),
        status=431,
        code="headers_too_large",
        title="Request headers too large",
        detail=f"at most {MAX_HEADER_COUNT} headers of at most {MAX_HEADER_BYTES} bytes together",
        headers={"Connection": "close"},
    )


class HeaderLimitMiddleware:
    """Answers `headers_too_large` (431) before any route sees such a request."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            refusal = headers_too_large(scope)
            if refusal is not None:
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)
