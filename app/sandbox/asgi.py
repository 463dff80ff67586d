"""The outermost ASGI layer: request ids and Graph/Entra response headers, path-scoped faults
(in the shape of the service the path belongs to, Microsoft's or bookingtime's), and the two
things only the server connection can do: cut it, or hang until the client leaves."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.sandbox.bookingtime.envelope import HTML_500, fault_body, is_bookingtime
from app.sandbox.errors import GraphError, graph_error_body
from app.sandbox.faults import RESPONSE_FAULTS
from app.sandbox.pipeline import Dropped, delay, fail
from app.sandbox.runtime import Runtime

CONTROL_PREFIX = "/_sandbox"
_EMPTY_SEGMENTS = re.compile(r"/{2,}")


def _transport(receive: Receive) -> asyncio.Transport:
    # uvicorn's receive is a bound method of its request cycle, which owns the connection.
    cycle = getattr(receive, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if not isinstance(transport, asyncio.Transport):
        raise RuntimeError("dropping connections needs uvicorn")
    return transport


class SandboxASGI:
    def __init__(self, app: ASGIApp, runtime: Runtime) -> None:
        self.app = app
        self.runtime = runtime

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        # Graph ignores empty path segments, and msgraph-sdk sends one: it joins a base URL that
        # httpx ends with "/" to URL templates that start with "/" (…/v1.0//users/…).
        path: str = _EMPTY_SEGMENTS.sub("/", scope["path"])
        if path != scope["path"]:
            scope["path"] = path
            scope["raw_path"] = re.sub(rb"/{2,}", b"/", scope.get("raw_path") or path.encode())
        request_id = str(uuid.uuid4())
        sent_id = dict(scope["headers"]).get(b"client-request-id", b"").decode("latin-1")
        client_request_id = sent_id or request_id
        scope["sandbox.request_id"] = request_id
        scope["sandbox.client_request_id"] = client_request_id

        async def drain_until_disconnect() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass

        async def drop() -> None:
            _transport(receive).abort()
            await drain_until_disconnect()

        async def hang(seconds: float) -> None:
            try:
                await asyncio.wait_for(drain_until_disconnect(), seconds)
            except TimeoutError:
                await drop()

        # A $batch item dispatched in-process arrives with its batch's closures: the only
        # connection there is to cut or hang is the batch's own.
        batch_item = "sandbox.drop" in scope
        scope.setdefault("sandbox.drop", drop)
        scope.setdefault("sandbox.hang", hang)

        if path.startswith("/v1.0"):
            extra = [
                (b"request-id", request_id.encode()),
                (b"client-request-id", client_request_id.encode()),
                (b"x-ms-ags-diagnostic", b'{"ServerInfo":{"DataCenter":"Sandbox"}}'),
            ]
        elif path.startswith(CONTROL_PREFIX) or is_bookingtime(path):
            extra = []
        else:
            extra = [(b"x-ms-request-id", request_id.encode())]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        forward: Send = send_with_headers
        try:
            if not path.startswith(CONTROL_PREFIX):
                rules = self.runtime.faults.pick(path)
                # At most one failure fires, so a response fault means no other failure did.
                answer = next((r for r in rules if r.kind in RESPONSE_FAULTS), None)
                try:
                    await fail(rules if answer is None else [], scope)
                    await delay(rules)
                    if answer is not None and answer.kind == "500":
                        raise GraphError(
                            500, "generalException", "General exception while processing."
                        )
                except GraphError as error:
                    await self._send_error(error, scope, send_with_headers)
                    return
                if answer is not None and answer.kind == "html500":
                    await _send(send_with_headers, 500, HTML_500.encode(), b"text/html")
                    return
                if answer is not None and not batch_item:  # only a whole response is cut
                    forward = _truncating(send_with_headers)
            await self.app(scope, receive, forward)
        except Dropped:
            return

    async def _send_error(self, error: GraphError, scope: Scope, send: Send) -> None:
        if is_bookingtime(scope["path"]):
            body = fault_body(error.status, scope["path"])
        else:
            body = graph_error_body(
                error,
                now=self.runtime.state.clock.now(),
                request_id=scope["sandbox.request_id"],
                client_request_id=scope["sandbox.client_request_id"],
            )
        await _send(send, error.status, json.dumps(body).encode(), headers=error.headers)


async def _send(
    send: Send,
    status: int,
    payload: bytes,
    content_type: bytes = b"application/json",
    headers: dict[str, str] | None = None,
) -> None:
    all_headers: list[Any] = [
        (b"content-type", content_type),
        (b"content-length", str(len(payload)).encode()),
        *[(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()],
    ]
    await send({"type": "http.response.start", "status": status, "headers": all_headers})
    await send({"type": "http.response.body", "body": payload})


def _truncating(send: Send) -> Send:
    """Let the app answer, then send only the first half of its body, with a Content-Length
    that matches: the response is complete, its JSON is not."""
    start: Message = {}
    body = bytearray()

    async def cut(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            start = message
            return
        if message["type"] != "http.response.body":
            await send(message)
            return
        body.extend(message.get("body", b""))
        if message.get("more_body", False):
            return
        kept = bytes(body[: len(body) // 2])
        headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
        headers.append((b"content-length", str(len(kept)).encode()))
        await send({**start, "headers": headers})
        await send({"type": "http.response.body", "body": kept})

    return cut
