"""An httpx transport that sends through aiohttp: httpx's API (auth flow, requests, responses,
test transports) over aiohttp's connection handling.

Measured against a local HTTPS server at 64 requests in flight, a Graph-sized POST cost the client
about 760 µs of CPU with httpx's own transport (httpcore on anyio) and about 330 µs with this one
(see docs/operations.md): aiohttp parses HTTP in C and, on uvloop, runs TLS in uvloop's transport.

What callers rely on is kept exactly: the httpx exception a failure raises says whether the
request may have reached the server (`ConnectError`, `ConnectTimeout`: never sent; read errors
and timeouts: maybe sent), which decides whether a create is looked up before it is sent again.
"""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from yarl import URL

# Below uvicorn's default keep-alive (5 s), so the client gives up an idle connection before a
# server of that kind closes it under a request about to be sent; Graph's front door keeps
# connections longer, so this only costs an occasional new connection there.
KEEPALIVE_SECONDS = 4.0

# Set by aiohttp from the body it sends.
_BODY_HEADERS = frozenset({"content-length", "transfer-encoding"})


@contextmanager
def _as_httpx_errors(request: httpx.Request) -> Iterator[None]:
    """aiohttp's exceptions as the httpx ones with the same meaning (most specific first)."""
    try:
        yield
    except aiohttp.ConnectionTimeoutError as exc:  # no connection within the connect timeout
        raise httpx.ConnectTimeout(str(exc) or "connect timed out", request=request) from exc
    except (TimeoutError, aiohttp.ServerTimeoutError) as exc:
        raise httpx.ReadTimeout(str(exc) or "read timed out", request=request) from exc
    except aiohttp.ClientConnectorError as exc:  # includes TLS and certificate failures
        raise httpx.ConnectError(str(exc), request=request) from exc
    except aiohttp.ServerDisconnectedError as exc:
        raise httpx.RemoteProtocolError(str(exc) or "server disconnected", request=request) from exc
    except aiohttp.ClientResponseError as exc:  # a malformed response
        raise httpx.RemoteProtocolError(str(exc), request=request) from exc
    except (aiohttp.ClientPayloadError, aiohttp.ClientOSError) as exc:
        raise httpx.ReadError(str(exc) or repr(exc), request=request) from exc
    except aiohttp.ClientError as exc:
        raise httpx.NetworkError(str(exc) or repr(exc), request=request) from exc


class AiohttpTransport(httpx.AsyncBaseTransport):
    """Sends httpx requests on one aiohttp session (a keep-alive pool of `max_connections`).

    The session is made on the first request, inside the running event loop. Proxies come from
    the environment (`HTTPS_PROXY`, `NO_PROXY`), as httpx's own transport takes them, looked up
    once per host (aiohttp's own lookup would hand every request to a thread). Bodies are read
    whole: Graph's responses are JSON documents.
    """

    def __init__(self, *, verify: ssl.SSLContext, max_connections: int) -> None:
        self._ssl = verify
        self._max_connections = max_connections
        self._session: aiohttp.ClientSession | None = None
        self._proxies: dict[tuple[str, str], URL | None] = {}

    def _proxy(self, url: httpx.URL) -> URL | None:
        key = (url.scheme, url.host)
        if key not in self._proxies:
            proxy = urllib.request.getproxies().get(url.scheme)
            bypass = bool(url.host) and urllib.request.proxy_bypass(url.host)
            self._proxies[key] = URL(proxy) if proxy and not bypass else None
        return self._proxies[key]

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(
                ssl=self._ssl,
                limit=self._max_connections,
                limit_per_host=0,
                keepalive_timeout=KEEPALIVE_SECONDS,
            )
            self._session = aiohttp.ClientSession(
                connector=connector,
                auto_decompress=False,  # httpx decodes, from the Content-Encoding it is given
                trust_env=False,  # proxies: see _proxy
                timeout=aiohttp.ClientTimeout(total=None),
            )
        return self._session

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        session = self._open()
        timeouts = request.extensions.get("timeout", {})
        connect, pool = timeouts.get("connect"), timeouts.get("pool")
        timeout = aiohttp.ClientTimeout(
            total=None,
            # aiohttp's `connect` covers the wait for a pooled connection and the connect.
            connect=None if connect is None or pool is None else connect + pool,
            sock_connect=connect,
            sock_read=timeouts.get("read"),
        )
        content = await request.aread()
        headers = [(k, v) for k, v in request.headers.multi_items() if k not in _BODY_HEADERS]
        proxy = self._proxy(request.url)
        with _as_httpx_errors(request):
            async with session.request(
                request.method,
                URL(str(request.url), encoded=True),  # as httpx quoted it, not re-quoted
                headers=headers,
                data=content or None,
                allow_redirects=False,
                timeout=timeout,
                proxy=proxy,
                proxy_auth=None if proxy is None else aiohttp.BasicAuth.from_url(proxy),
            ) as response:
                body = await response.read()
                status, raw_headers, reason = response.status, response.raw_headers, response.reason
        extensions: dict[str, object] = {"http_version": b"HTTP/1.1"}
        if reason:
            extensions["reason_phrase"] = reason.encode("latin-1", "replace")
        return httpx.Response(
            status, headers=list(raw_headers), content=body, request=request, extensions=extensions
        )

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def send(
    transport: httpx.AsyncBaseTransport, request: httpx.Request, auth: httpx.Auth
) -> httpx.Response:
    """Send `request` through `auth`'s flow straight to `transport`: what httpx's
    `AsyncClient.send` does for Graph's requests, without the redirects, cookie jar and event
    hooks they never use (about a fifth of the client's CPU per request)."""
    flow = auth.async_auth_flow(request)
    try:
        request = await flow.__anext__()
        while True:
            response = await transport.handle_async_request(request)
            response.request = request
            await response.aread()
            try:
                request = await flow.asend(response)
            except StopAsyncIteration:
                return response
            await response.aclose()
    finally:
        await flow.aclose()
