"""The outermost ASGI layer: request ids and Graph/Entra response headers, path-scoped faults,
and the two things only the server connection can do: cut it, or hang until the client leaves."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.sandbox.errors import GraphError, graph_error_body
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
        scope.setdefault("sandbox.drop", drop)
        scope.setdefault("sandbox.hang", hang)

        if path.startswith("/v1.0"):
            extra = [
                (b"request-id", request_id.encode()),
                (b"client-request-id", client_request_id.encode()),
                (b"x-ms-ags-diagnostic", b'{"ServerInfo":{"DataCenter":"Sandbox"}}'),
            ]
        elif path.startswith(CONTROL_PREFIX):
            extra = []
        else:
            extra = [(b"x-ms-request-id", request_id.encode())]

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start" and extra:
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        try:
            if not path.startswith(CONTROL_PREFIX):
                rules = self.runtime.faults.pick(path)
                try:
                    await fail(rules, scope)
                    await delay(rules)
                except GraphError as error:
                    await self._send_error(error, scope, send_with_headers)
                    return
            await self.app(scope, receive, send_with_headers)
        except Dropped:
            return

    async def _send_error(self, error: GraphError, scope: Scope, send: Send) -> None:
        body = graph_error_body(
            error,
            now=self.runtime.state.clock.now(),
            request_id=scope["sandbox.request_id"],
            client_request_id=scope["sandbox.client_request_id"],
        )
        payload = json.dumps(body).encode()
        headers: list[Any] = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(payload)).encode()),
            *[(k.lower().encode(), v.encode()) for k, v in error.headers.items()],
        ]
        await send({"type": "http.response.start", "status": error.status, "headers": headers})
        await send({"type": "http.response.body", "body": payload})
