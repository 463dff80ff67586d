"""Graph and Entra reproduced with httpx.MockTransport: real statuses, headers and bodies from
graph-protocol.md; MSAL really calls our http_client against the fake token endpoint."""

from __future__ import annotations

import json
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest
from pydantic import SecretStr

from app.graph.auth import AuthRegistry, GraphCredentials, MsalHttpClient
from app.graph.client import GraphClient
from app.graph.limits import MailboxLimiter

GRAPH = "https://graph.microsoft.com/v1.0"
LOGIN = "https://login.microsoftonline.com"
TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "11111111-2222-3333-4444-555555555555"
SECRET = "s3cr3t~value"

GraphHandler = Callable[[httpx.Request], Awaitable[httpx.Response]]


def graph_json(status: int, body: Any, **headers: str) -> httpx.Response:
    """A Graph response with Graph's headers (request-id, OData content type)."""
    base = {
        "request-id": str(uuid.uuid4()),
        "Content-Type": "application/json;odata.metadata=minimal;odata.streaming=true;"
        "IEEE754Compatible=false;charset=utf-8",
        "OData-Version": "4.0",
    }
    base.update({k.replace("_", "-"): v for k, v in headers.items()})
    content = b"" if body is None else json.dumps(body).encode()
    return httpx.Response(status, content=content, headers=base)


def graph_error(status: int, code: str, message: str, **headers: str) -> httpx.Response:
    request_id = str(uuid.uuid4())
    body = {
        "error": {
            "code": code,
            "message": message,
            "innerError": {"date": "2026-05-05T12:36:46", "request-id": request_id},
        }
    }
    return graph_json(status, body, request_id=request_id, **headers)


def aadsts_body(code: int, error: str, text: str) -> dict[str, Any]:
    """Entra's token error JSON (graph-protocol.md §5.1)."""
    trace = str(uuid.uuid4())
    return {
        "error": error,
        "error_description": f"AADSTS{code}: {text}\r\nTrace ID: {trace}\r\n"
        f"Correlation ID: {uuid.uuid4()}\r\nTimestamp: 2023-05-06 06:03:00Z",
        "error_codes": [code],
        "timestamp": "2023-05-06 06:03:00Z",
        "trace_id": trace,
        "correlation_id": str(uuid.uuid4()),
        "error_uri": f"{LOGIN}/error?code={code}",
    }


@dataclass
class FakeEntra:
    """The Entra discovery and token endpoints; set `token_error` to answer with an AADSTS error."""

    host: str = LOGIN
    tenants: set[str] = field(default_factory=lambda: {TENANT})
    secret: str = SECRET
    expires_in: int = 3599
    token_error: tuple[int, dict[str, Any]] | None = None
    requests: list[httpx.Request] = field(default_factory=list)
    issued: list[str] = field(default_factory=list)

    def token_requests(self) -> list[httpx.Request]:
        return [r for r in self.requests if r.url.path.endswith("/oauth2/v2.0/token")]

    def handler(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.path == "/common/discovery/instance":
            # MSAL asks for the authority's aliases (cache lookups) on Microsoft's hosts.
            return httpx.Response(
                200,
                json={
                    "tenant_discovery_endpoint": f"{LOGIN}/common/v2.0/.well-known/"
                    "openid-configuration",
                    "api-version": "1.1",
                    "metadata": [
                        {
                            "preferred_network": "login.microsoftonline.com",
                            "preferred_cache": "login.windows.net",
                            "aliases": [
                                "login.microsoftonline.com",
                                "login.windows.net",
                                "login.microsoft.com",
                                "sts.windows.net",
                            ],
                        }
                    ],
                },
            )
        tenant = request.url.path.split("/")[1]
        if tenant not in self.tenants:
            body = aadsts_body(
                90002,
                "invalid_tenant",
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID "
                "and are signing into the correct cloud.",
            )
            return httpx.Response(400, json=body)
        if request.url.path.endswith("/.well-known/openid-configuration"):
            return httpx.Response(
                200,
                json={
                    "token_endpoint": f"{self.host}/{tenant}/oauth2/v2.0/token",
                    "authorization_endpoint": f"{self.host}/{tenant}/oauth2/v2.0/authorize",
                    "issuer": f"{self.host}/{tenant}/v2.0",
                    "token_endpoint_auth_methods_supported": [
                        "client_secret_post",
                        "private_key_jwt",
                        "client_secret_basic",
                    ],
                },
                headers={"Cache-Control": "max-age=86400, private"},
            )
        if request.method == "POST" and request.url.path.endswith("/oauth2/v2.0/token"):
            form = parse_qs(request.content.decode())
            if self.token_error is not None:
                status, body = self.token_error
                return httpx.Response(status, json=body)
            if form.get("client_secret") != [self.secret]:
                return httpx.Response(
                    401,
                    json=aadsts_body(7000215, "invalid_client", "Invalid client secret provided."),
                )
            token = f"eyJ.token-{len(self.issued) + 1}"
            self.issued.append(token)
            return httpx.Response(
                200,
                json={
                    "token_type": "Bearer",
                    "expires_in": self.expires_in,
                    "ext_expires_in": self.expires_in,
                    "access_token": token,
                },
                headers={"Cache-Control": "no-store, no-cache", "Pragma": "no-cache"},
            )
        return httpx.Response(404)


class FakeClock:
    """Wall clock for the limiter; `sleep` moves it instead of waiting."""

    def __init__(self) -> None:
        self.now = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
        self.slept: list[float] = []

    def __call__(self) -> datetime:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += timedelta(seconds=seconds)


@dataclass
class Env:
    graph: GraphClient
    entra: FakeEntra
    registry: AuthRegistry
    clock: FakeClock
    sent: list[httpx.Request]
    credentials: GraphCredentials


@pytest.fixture
def entra() -> FakeEntra:
    return FakeEntra()


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
async def make_env(entra: FakeEntra, clock: FakeClock) -> Any:
    """Build a GraphClient whose Graph is `handler` (async) and whose Entra is `entra`."""
    closers: list[Any] = []

    async def build(handler: GraphHandler, *, secret: str = SECRET) -> Env:
        sent: list[httpx.Request] = []

        async def recording(request: httpx.Request) -> httpx.Response:
            # A snapshot: the auth flow mutates and resends the same Request object.
            sent.append(
                httpx.Request(
                    request.method,
                    request.url,
                    headers=request.headers.copy(),
                    content=request.content,
                )
            )
            return await handler(request)

        msal_http = MsalHttpClient(httpx.Client(transport=httpx.MockTransport(entra.handler)))
        registry = AuthRegistry(authority_host=LOGIN, graph_url=GRAPH, http_client=msal_http)
        http = httpx.AsyncClient(transport=httpx.MockTransport(recording))
        closers.append((http, registry))
        credentials = GraphCredentials(TENANT, CLIENT_ID, SecretStr(secret))
        limiter = MailboxLimiter(clock=clock, sleep=clock.sleep)
        graph = GraphClient(
            http,
            registry.auth(credentials),
            graph_url=GRAPH,
            limiter=limiter,
            timezone="W. Europe Standard Time",
        )
        return Env(graph, entra, registry, clock, sent, credentials)

    yield build
    for http, registry in closers:
        await http.aclose()
        registry.close()
