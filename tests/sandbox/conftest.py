"""A running sandbox per test (real HTTPS, real uvicorn), a tenant with an app and two mailboxes,
and an httpx client that trusts the sandbox's CA."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest

from app.sandbox import Control, SandboxServer, ThrottleLimits

GRAPH_SCOPE = "https://graph.microsoft.com/.default"
TAG_ID = "String {66f5a359-4659-4830-9070-00040ec6ac6e} Name calbridgeId"


@dataclass
class Setup:
    sandbox: SandboxServer
    control: Control
    tenant_id: str
    client_id: str
    secret: str
    max_id: str
    erika_id: str


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    limits = ThrottleLimits(concurrency=4, requests_per_window=50)
    async with SandboxServer.start(seed=7, limits=limits) as server:
        yield server


@pytest.fixture
def setup(sandbox: SandboxServer) -> Setup:
    control = sandbox.control
    tenant = control.add_tenant("contoso.example")
    app, secret = control.add_app(tenant.id)
    max_user = control.add_user(tenant.id, "max@contoso.example")
    erika = control.add_user(tenant.id, "erika@contoso.example")
    return Setup(sandbox, control, tenant.id, app.client_id, secret, max_user.id, erika.id)


@pytest.fixture
async def http(sandbox: SandboxServer) -> AsyncIterator[httpx.AsyncClient]:
    context = ssl.create_default_context(cafile=str(sandbox.ca_path))
    async with httpx.AsyncClient(verify=context, base_url=sandbox.url, timeout=10) as client:
        yield client


async def get_token(http: httpx.AsyncClient, setup: Setup, **overrides: str) -> httpx.Response:
    form = {
        "grant_type": "client_credentials",
        "client_id": setup.client_id,
        "client_secret": setup.secret,
        "scope": GRAPH_SCOPE,
        **overrides,
    }
    tenant = overrides.pop("tenant", setup.tenant_id)
    form.pop("tenant", None)
    return await http.post(f"/{tenant}/oauth2/v2.0/token", data=form)


@pytest.fixture
async def graph(http: httpx.AsyncClient, setup: Setup) -> httpx.AsyncClient:
    """The same client with a valid bearer token and the Graph base URL."""
    response = await get_token(http, setup)
    assert response.status_code == 200, response.text
    http.headers["Authorization"] = f"Bearer {response.json()['access_token']}"
    return http
