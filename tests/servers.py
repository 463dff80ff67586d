"""A real uvicorn server on loopback inside a test's event loop, for tests that need sockets
(Graph's callbacks to calbridge, raw HTTP abuse), and a free port to put it on."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # the test runner owns the signals
        pass


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@asynccontextmanager
async def serve_app(app: Any, *, port: int = 0, **config: Any) -> AsyncIterator[int]:
    """Serve `app` on 127.0.0.1:`port` (0: any free one) until the block ends; yields the port.
    `config` goes to uvicorn.Config (quiet by default)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", port))
    sock.listen(64)
    config = {"log_level": "warning", "access_log": False, **config}
    server = _Server(uvicorn.Config(app, **config))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.01)
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        await task
        sock.close()
