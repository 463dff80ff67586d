"""AiohttpTransport: httpx requests sent through aiohttp over real TLS, and each way a request
can fail mapped to the httpx exception that says whether it may have reached the server."""

from __future__ import annotations

import asyncio
import gzip
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest
import trustme

from app.graph.transport import AiohttpTransport

Handler = Callable[[bytes, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class TlsServer:
    """A raw HTTPS server on 127.0.0.1 whose answer each test writes byte by byte."""

    port: int
    client_ssl: ssl.SSLContext
    requests: list[bytes] = field(default_factory=list)
    connections: int = 0

    def url(self, path: str) -> str:
        return f"https://127.0.0.1:{self.port}{path}"


@pytest.fixture
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
async def serve(ca: trustme.CA) -> AsyncIterator[Callable[[Handler], Awaitable[TlsServer]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> TlsServer:
        server_ssl = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert("127.0.0.1").configure_cert(server_ssl)
        client_ssl = ssl.create_default_context()
        ca.configure_trust(client_ssl)
        state = TlsServer(0, client_ssl)

        async def on_connection(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            state.connections += 1
            try:
                while True:
                    head = await reader.readuntil(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n"):
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    request = head + await reader.readexactly(length)
                    state.requests.append(request)
                    await handler(request, reader, writer)
                    if writer.is_closing():
                        return
            except (asyncio.IncompleteReadError, ConnectionError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_connection, "127.0.0.1", 0, ssl=server_ssl)
        servers.append(server)
        state.port = server.sockets[0].getsockname()[1]
        return state

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def _answer(status: int, body: bytes, *headers: str) -> bytes:
    lines = [f"HTTP/1.1 {status} Whatever", f"Content-Length: {len(body)}", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def _client(server: TlsServer, *, max_connections: int = 4) -> httpx.AsyncClient:
    transport = AiohttpTransport(verify=server.client_ssl, max_connections=max_connections)
    return httpx.AsyncClient(transport=transport, timeout=httpx.Timeout(5.0))


async def test_a_request_and_its_answer_pass_through_unchanged(
    serve: Callable[..., Awaitable[TlsServer]],
) -> None:
    async def handler(
        request: bytes, _r: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        body = b'{"id":"AAMk=","subject":"Gr\xc3\xbc\xc3\x9fe"}'
        writer.write(
            _answer(201, body, "Content-Type: application/json", "request-id: r-1", 'ETag: W/"ck"')
        )
        await writer.drain()

    server = await serve(handler)
    async with _client(server) as client:
        response = await client.post(
            server.url("/v1.0/users/a%40b.example/events/AAMk%2Fx%3D"),
            json={"subject": "Grüße"},
            headers=[("Prefer", 'IdType="ImmutableId"'), ("Prefer", 'outlook.timezone="UTC"')],
        )
        again = await client.get(server.url("/v1.0/me"))
    assert response.status_code == 201
    assert response.json() == {"id": "AAMk=", "subject": "Grüße"}
    assert response.headers["request-id"] == "r-1"
    assert response.headers["etag"] == 'W/"ck"'
    sent = server.requests[0]
    # The path exactly as httpx quoted it: aiohttp must not decode or re-quote it.
    assert sent.startswith(b"POST /v1.0/users/a%40b.example/events/AAMk%2Fx%3D HTTP/1.1\r\n")
    lines = sent.lower().split(b"\r\n")
    assert b'prefer: idtype="immutableid"' in lines
    assert b'prefer: outlook.timezone="utc"' in lines
    assert sum(line.startswith(b"content-length:") for line in lines) == 1
    assert sent.endswith('{"subject":"Grüße"}'.encode())
    assert again.status_code == 201
    assert server.connections == 1  # the connection was kept alive and used again


async def test_a_gzip_body_is_decoded(serve: Callable[..., Awaitable[TlsServer]]) -> None:
    async def handler(_req: bytes, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        body = gzip.compress(b'{"value":[]}')
        writer.write(_answer(200, body, "Content-Type: application/json", "Content-Encoding: gzip"))
        await writer.drain()

    server = await serve(handler)
    async with _client(server) as client:
        response = await client.get(server.url("/v1.0/users/x/events"))
    assert response.json() == {"value": []}


async def test_a_refused_connection_is_a_connect_error() -> None:
    probe = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = probe.sockets[0].getsockname()[1]
    probe.close()
    await probe.wait_closed()  # nothing listens there now
    transport = AiohttpTransport(verify=ssl.create_default_context(), max_connections=1)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(f"https://127.0.0.1:{port}/v1.0/me")


async def test_an_untrusted_certificate_is_a_connect_error(
    serve: Callable[..., Awaitable[TlsServer]],
) -> None:
    async def never(_req: bytes, _r: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        raise AssertionError("no request may arrive over an unverified connection")

    server = await serve(never)
    transport = AiohttpTransport(verify=ssl.create_default_context(), max_connections=1)
    async with httpx.AsyncClient(transport=transport) as client:
        with pytest.raises(httpx.ConnectError):
            await client.get(server.url("/v1.0/me"))
    assert server.requests == []


async def test_a_connection_closed_after_the_request_may_have_been_sent(
    serve: Callable[..., Awaitable[TlsServer]],
) -> None:
    async def hang_up(_req: bytes, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await serve(hang_up)
    async with _client(server) as client:
        with pytest.raises(httpx.TransportError) as raised:
            await client.post(server.url("/v1.0/users/x/events"), json={})
    assert not isinstance(raised.value, httpx.ConnectError | httpx.ConnectTimeout)
    assert len(server.requests) == 1


async def test_no_answer_within_the_read_timeout_is_a_read_timeout(
    serve: Callable[..., Awaitable[TlsServer]],
) -> None:
    async def silent(_req: bytes, reader: asyncio.StreamReader, _w: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client gives up

    server = await serve(silent)
    async with _client(server) as client:
        with pytest.raises(httpx.ReadTimeout):
            await client.get(server.url("/v1.0/me"), timeout=httpx.Timeout(5.0, read=0.3))


async def test_waiting_too_long_for_a_pooled_connection_is_never_sent(
    serve: Callable[..., Awaitable[TlsServer]],
) -> None:
    arrived, release = asyncio.Event(), asyncio.Event()

    async def slow(_req: bytes, _r: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        arrived.set()
        await release.wait()
        writer.write(_answer(204, b""))
        await writer.drain()

    server = await serve(slow)
    async with _client(server, max_connections=1) as client:
        first = asyncio.create_task(client.get(server.url("/v1.0/first")))
        await arrived.wait()
        with pytest.raises(httpx.ConnectTimeout):
            await client.get(
                server.url("/v1.0/second"), timeout=httpx.Timeout(5.0, connect=0.1, pool=0.1)
            )
        release.set()
        assert (await first).status_code == 204
    assert [r.split(b" ")[1] for r in server.requests] == [b"/v1.0/first"]


def test_proxies_come_from_the_environment_once_per_host(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://user:secret@proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "internal.example")
    transport = AiohttpTransport(verify=ssl.create_default_context(), max_connections=1)
    proxy = transport._proxy(httpx.URL("https://graph.microsoft.com/v1.0/me"))
    assert proxy is not None and (proxy.host, proxy.port, proxy.user) == (
        "proxy.example",
        3128,
        "user",
    )
    assert transport._proxy(httpx.URL("https://login.internal.example/token")) is None
    monkeypatch.delenv("HTTPS_PROXY")
    # Looked up once: a host keeps the proxy it was given.
    assert transport._proxy(httpx.URL("https://graph.microsoft.com/v1.0/users")) == proxy
    assert transport._proxy(httpx.URL("https://other.example/")) is None
