"""Sending one Graph request: the process's shared httpx client, Graph's headers, the mailbox's
request slot, the request counters, and the classification of every failure (app.graph.errors).
"""

from __future__ import annotations

import uuid
import zlib
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from app import counters
from app.config import Settings
from app.graph.auth import GraphAuth
from app.graph.errors import (
    GraphError,
    Target,
    Transient,
    UnexpectedGraphError,
    error_from_response,
    parse_retry_after,
)
from app.graph.limits import MailboxLimiter
from app.graph.schemas import GraphResult
from app.tls import ssl_context

PREFER_IMMUTABLE_ID = 'IdType="ImmutableId"'
GRAPH_TIMEOUT = httpx.Timeout(30.0, connect=10.0)
# Outlook allows 4 requests in flight per mailbox, so a few hundred mailboxes' worth of
# connections stay open. Idle ones are dropped before uvicorn's 5 s keep-alive (the sandbox)
# would close one under a request about to be sent.
GRAPH_LIMITS = httpx.Limits(
    max_connections=512, max_keepalive_connections=512, keepalive_expiry=4.0
)


GRAPH_HTTP_SHARDS = 8


def build_http_client(
    settings: Settings, *, timeout: httpx.Timeout = GRAPH_TIMEOUT
) -> httpx.AsyncClient:
    """A client for Graph, trusting the system's, certifi's and CALBRIDGE_CA_BUNDLE's CAs;
    proxies come from the environment (HTTPS_PROXY, NO_PROXY)."""
    return httpx.AsyncClient(
        verify=ssl_context(settings.ca_bundle), timeout=timeout, limits=GRAPH_LIMITS
    )


class GraphHttp:
    """The process's httpx clients for Graph: a few of them, each mailbox always on the same one.

    Why several: to place a request, httpcore's pool looks at every connection it holds (and does
    so again for each request waiting for one), so with the hundreds of connections that many
    mailboxes' 4 requests each keep open, choosing a connection cost more CPU than the request
    itself. Smaller pools keep that choice cheap (`bench/e2e.py`, figures in docs/operations.md).
    """

    def __init__(self, clients: Sequence[httpx.AsyncClient]) -> None:
        if not clients:
            raise ValueError("GraphHttp needs at least one client")
        self.clients = tuple(clients)

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        shards: int = GRAPH_HTTP_SHARDS,
        timeout: httpx.Timeout = GRAPH_TIMEOUT,
    ) -> GraphHttp:
        return cls([build_http_client(settings, timeout=timeout) for _ in range(shards)])

    def for_mailbox(self, mailbox: str | None) -> httpx.AsyncClient:
        if mailbox is None or len(self.clients) == 1:
            return self.clients[0]
        return self.clients[zlib.crc32(mailbox.lower().encode()) % len(self.clients)]

    async def aclose(self) -> None:
        for client in self.clients:
            await client.aclose()


class GraphSender:
    """One connection's way to Graph: its auth on the shared client, under the mailbox limiter.

    Every request carries `Prefer: IdType="ImmutableId"` and a fresh `client-request-id`; a
    non-2xx answer or a network failure raises a GraphError subclass.
    """

    def __init__(
        self,
        http: GraphHttp | httpx.AsyncClient,
        auth: GraphAuth,
        *,
        graph_url: str,
        limiter: MailboxLimiter,
        timezone: str = "UTC",
    ) -> None:
        self._http = http if isinstance(http, GraphHttp) else GraphHttp([http])
        self._auth = auth
        self.graph_url = graph_url.rstrip("/")
        base = urlsplit(self.graph_url)
        self._origin = (base.scheme, base.netloc.lower())
        self._version_path = base.path  # "/v1.0": $batch item URLs are relative to it
        self.limiter = limiter
        self.timezone = timezone

    def mailbox_key(self, mailbox: str) -> str:
        """Outlook limits apply per app and mailbox, so the limiter key holds both."""
        return f"{self._auth.client_id.lower()}:{mailbox.lower()}"

    def mailbox_throttled_until(self, mailbox: str) -> datetime | None:
        """When the mailbox may be called again (feeds the queue's mailbox throttle)."""
        return self.limiter.throttled_until(self.mailbox_key(mailbox))

    def _url(self, path: str) -> str:
        return f"{self.graph_url}{path}"

    def _checked_link(self, link: str) -> str:
        """nextLink/deltaLink are followed as given, but only on Graph's own host: a link from a
        tampered response or database must not carry our bearer token elsewhere."""
        parts = urlsplit(link)
        if (parts.scheme.lower(), parts.netloc.lower()) != self._origin:
            raise UnexpectedGraphError(
                f"refusing to follow a link to another host: {parts.scheme}://{parts.netloc}",
                code="foreignLink",
                permanent=True,
            )
        return link

    @staticmethod
    def _user(mailbox: str) -> str:
        return "/users/" + quote(mailbox, safe="@")

    @staticmethod
    def _id(item_id: str) -> str:
        return quote(item_id, safe="=")

    async def _send(
        self,
        method: str,
        url: str,
        *,
        target: Target,
        mailbox: str | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        prefer: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> tuple[httpx.Response, str]:
        """Send one request; return the 2xx response and our client-request-id, or raise."""
        client_request_id = str(uuid.uuid4())
        # One Prefer line per preference (RFC 7240 allows both forms; a single comma-joined
        # header is what $batch items get, separate lines are what Graph is seen to honour).
        header_list = [("client-request-id", client_request_id), ("Prefer", PREFER_IMMUTABLE_ID)]
        header_list += [("Prefer", value) for value in prefer]
        header_list += list((headers or {}).items())
        http = self._http.for_mailbox(mailbox)
        request = http.build_request(method, url, params=params, json=json, headers=header_list)
        if mailbox is None:
            response = await self._transmit(http, request, client_request_id, target)
        else:
            key = self.mailbox_key(mailbox)
            async with self.limiter.slot(key):
                response = await self._transmit(http, request, client_request_id, target)
                self._note_throttle(key, response.status_code, response.headers)
        if response.is_success:
            return response, client_request_id
        raise error_from_response(
            response,
            target=target,
            mailbox=mailbox,
            client_request_id=client_request_id,
            now=self.limiter.clock(),
        )

    async def _transmit(
        self,
        http: httpx.AsyncClient,
        request: httpx.Request,
        client_request_id: str,
        target: Target,
    ) -> httpx.Response:
        """Send `request`; every outcome is counted here, once (app.counters)."""
        try:
            response = await http.send(request, auth=self._auth)
        except GraphError as exc:  # from the token provider inside the auth flow
            counters.graph_response(request.method, target, "token_error")
            exc.client_request_id = exc.client_request_id or client_request_id
            raise
        except httpx.TimeoutException as exc:
            counters.graph_response(request.method, target, "timeout")
            # No connection was had: the request never left, so a create may be sent again
            # without looking for it first.
            never_sent = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            raise Transient(
                f"Graph timed out: {exc!r}",
                code="timeout",
                sent=not never_sent,
                client_request_id=client_request_id,
            ) from exc
        except httpx.TransportError as exc:
            counters.graph_response(request.method, target, "connection_error")
            raise Transient(
                f"Graph connection failed: {exc!r}",
                code="connection_error",
                sent=not isinstance(exc, httpx.ConnectError),
                client_request_id=client_request_id,
            ) from exc
        counters.graph_response(request.method, target, response.status_code)
        return response

    def _note_throttle(self, key: str, status: int, headers: Mapping[str, str]) -> None:
        if status in (429, 503):
            lower = {k.lower(): v for k, v in headers.items()}
            seconds = parse_retry_after(lower.get("retry-after"), now=self.limiter.clock())
            if seconds is not None:
                self.limiter.throttle(key, seconds)

    @staticmethod
    def _result(value: Any, response: httpx.Response, client_request_id: str) -> GraphResult[Any]:
        return GraphResult(
            value=value,
            status=response.status_code,
            request_id=response.headers.get("request-id"),
            client_request_id=response.headers.get("client-request-id") or client_request_id,
        )
