"""A webhook receiver for tests: a real HTTP(S) server on loopback that answers Graph's
validation handshake and records every request."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import trustme
import uvicorn

from tests.sandbox.schema import assert_valid

COLLECTION = "microsoft.graph.changeNotificationCollection"
WAIT = 5.0


@dataclass
class Received:
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A client endpoint: answers the handshake per `validation`, notifications with the next
    of `statuses` (then 202), and records every request."""

    validation: str = "echo"  # echo | wrong | 500 | encoded
    statuses: list[int] = field(default_factory=list)
    requests: list[Received] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    url: str = ""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        query = parse_qs(scope["query_string"].decode())
        with self.cond:
            self.requests.append(Received(scope["path"], query, headers, body))
            self.cond.notify_all()
            status = self.statuses.pop(0) if self.statuses and "validationToken" not in query else 0
        if "validationToken" in query:
            token = query["validationToken"][0]
            status, reply = {
                "echo": (200, token),
                "wrong": (200, token[::-1]),
                "500": (500, ""),
                "encoded": (200, scope["query_string"].decode().split("=", 1)[1]),
            }[self.validation]
            content_type = b"text/plain; charset=utf-8"
        else:
            status, reply, content_type = status or 202, "", b"text/plain"
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [(b"content-type", content_type)],
            }
        )
        await send({"type": "http.response.body", "body": reply.encode()})

    def posts(self, path: str = "/hook") -> list[Received]:
        with self.cond:
            return [r for r in self.requests if r.path == path and "validationToken" not in r.query]

    def wait(self, predicate: Callable[[Receiver], bool]) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: predicate(self), WAIT), self.requests

    def items(self, path: str = "/hook") -> list[dict[str, Any]]:
        found = []
        for request in self.posts(path):
            body = request.json()
            assert_valid(body, COLLECTION)
            found += body["value"]
        return found


class _Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.ready = threading.Event()

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        self.ready.set()


def serve(receiver: Receiver, cert: trustme.LeafCert | None, tmp: Path) -> Iterator[Receiver]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    port = sock.getsockname()[1]
    kwargs: dict[str, Any] = {}
    if cert is not None:
        cert.private_key_and_cert_chain_pem.write_to_path(str(tmp / "receiver.pem"))
        kwargs = {"ssl_certfile": str(tmp / "receiver.pem")}
    config = uvicorn.Config(
        receiver, log_level="warning", access_log=False, lifespan="off", loop="asyncio", **kwargs
    )
    server = _Server(config)
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    assert server.ready.wait(WAIT)
    receiver.url = f"{'https' if cert else 'http'}://127.0.0.1:{port}"
    try:
        yield receiver
    finally:
        server.should_exit = True
        thread.join(WAIT)
        sock.close()
