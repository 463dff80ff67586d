"""A minimal HTTP/1.1 keep-alive client on plain sockets for benchmarks: a small fraction of
httpx's CPU per request, which matters when the load generator shares the machine with the
system under test. It only understands responses with Content-Length (uvicorn sets it on JSON
responses)."""

from __future__ import annotations

import asyncio


class RawConnection:
    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def _open(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._reader is None or self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        return self._reader, self._writer

    def _forget(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._reader = self._writer = None

    async def post(self, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        return await self.request("POST", path, headers, body)

    async def get(self, path: str) -> tuple[int, bytes]:
        return await self.request("GET", path, {}, b"")

    def build(self, method: str, path: str, headers: dict[str, str], body: bytes) -> bytes:
        """The whole request as bytes, for `send` (built ahead when the client's CPU counts)."""
        lines = [f"{method} {path} HTTP/1.1", f"host: {self.host}:{self.port}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        if body or method != "GET":
            lines.append(f"content-length: {len(body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, bytes]:
        return await self.send(self.build(method, path, headers, body))

    async def send(self, raw: bytes) -> tuple[int, bytes]:
        """Send one pre-built request; a connection the server closed meanwhile is reopened
        once."""
        for attempt in (1, 2):
            reader, writer = await self._open()
            try:
                writer.write(raw)
                head = await reader.readuntil(b"\r\n\r\n")
            except (ConnectionError, asyncio.IncompleteReadError):
                self._forget()
                if attempt == 2:
                    raise
                continue
            status = int(head[9:12])
            lowered = head.lower()
            start = lowered.index(b"content-length:") + len(b"content-length:")
            length = int(lowered[start : lowered.index(b"\r\n", start)])
            content = await reader.readexactly(length)
            if b"connection: close" in lowered:
                self._forget()
            return status, content
        raise AssertionError("unreachable")

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            try:
                await self._writer.wait_closed()
            except ConnectionError:
                pass
        self._reader = self._writer = None
