"""MSAL through our httpx http_client: token reuse, refresh on 401, AADSTS mapping."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.graph.auth import (
    AuthRegistry,
    GraphCredentials,
    MsalHttpClient,
    graph_scope,
)
from app.graph.errors import AuthenticationFailed, Transient
from tests.graph.conftest import (
    CLIENT_ID,
    GRAPH,
    LOGIN,
    SECRET,
    TENANT,
    FakeEntra,
    aadsts_body,
    graph_error,
    graph_json,
)

USER = {"id": "u1", "displayName": "Dana Wellt", "mail": "d.wellt@contoso.com"}


async def ok_user(request: httpx.Request) -> httpx.Response:
    return graph_json(200, USER)


async def test_one_token_request_for_many_calls(make_env: Any) -> None:
    env = await make_env(ok_user)
    await asyncio.gather(*(env.graph.get_user("d.wellt@contoso.com") for _ in range(12)))
    for _ in range(5):
        await env.graph.get_user("d.wellt@contoso.com")
    assert len(env.entra.token_requests()) == 1
    assert {r.headers["Authorization"] for r in env.sent} == {"Bearer eyJ.token-1"}
    form = env.entra.token_requests()[0].content.decode()
    assert "grant_type=client_credentials" in form
    assert "scope=https%3A%2F%2Fgraph.microsoft.com%2F.default" in form


async def test_short_lived_token_is_fetched_again(make_env: Any, entra: FakeEntra) -> None:
    # Under MSAL's 5-minute margin a token is never reused: each call needs a new one.
    entra.expires_in = 200
    env = await make_env(ok_user)
    await env.graph.get_user("a@contoso.com")
    await env.graph.get_user("a@contoso.com")
    assert len(entra.token_requests()) == 2


async def test_refresh_once_on_invalid_token(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] == "Bearer eyJ.token-1":
            return graph_error(
                401,
                "InvalidAuthenticationToken",
                "Access token has expired or is not yet valid.",
                WWW_Authenticate='Bearer realm="", '
                'client_id="00000003-0000-0000-c000-000000000000"',
            )
        return graph_json(200, USER)

    env = await make_env(handler)
    result = await env.graph.get_user("a@contoso.com")
    assert result.value.id == "u1"
    assert [r.headers["Authorization"] for r in env.sent] == [
        "Bearer eyJ.token-1",
        "Bearer eyJ.token-2",
    ]
    # Same logical call: the resend keeps its client-request-id.
    assert env.sent[0].headers["client-request-id"] == env.sent[1].headers["client-request-id"]
    await env.graph.get_user("a@contoso.com")
    assert len(env.entra.token_requests()) == 2


async def test_second_401_is_not_retried_again(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(
            401, "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
        )

    env = await make_env(handler)
    with pytest.raises(AuthenticationFailed) as caught:
        await env.graph.get_user("a@contoso.com")
    assert len(env.sent) == 2
    assert caught.value.code == "InvalidAuthenticationToken"
    assert caught.value.status == 401


@pytest.mark.parametrize(
    ("status", "body", "kind", "code"),
    [
        (
            401,
            aadsts_body(7000215, "invalid_client", "Invalid client secret provided."),
            "invalid_secret",
            7000215,
        ),
        (
            401,
            aadsts_body(
                7000222,
                "invalid_client",
                f"The provided client secret keys for app '{CLIENT_ID}' are expired.",
            ),
            "expired_secret",
            7000222,
        ),
        (
            400,
            aadsts_body(
                700016,
                "unauthorized_client",
                f"Application with identifier '{CLIENT_ID}' was not found in the directory.",
            ),
            "app_not_found",
            700016,
        ),
        (
            400,
            aadsts_body(7000112, "unauthorized_client", "Application is disabled."),
            "other",
            7000112,
        ),
    ],
)
async def test_token_errors_mapped_by_aadsts_code(
    make_env: Any, entra: FakeEntra, status: int, body: dict[str, Any], kind: str, code: int
) -> None:
    entra.token_error = (status, body)
    env = await make_env(ok_user)
    with pytest.raises(AuthenticationFailed) as caught:
        await env.graph.get_user("a@contoso.com")
    error = caught.value
    assert (error.kind, error.aadsts_code) == (kind, code)
    assert error.message.startswith(f"AADSTS{code}: ")
    assert "Trace ID" not in error.message
    assert error.permanent is (kind != "other")
    assert env.sent == []  # no Graph call without a token


async def test_wrong_secret_really_rejected(make_env: Any) -> None:
    env = await make_env(ok_user, secret="the-secret-id-not-its-value")
    with pytest.raises(AuthenticationFailed) as caught:
        await env.graph.get_user("a@contoso.com")
    assert caught.value.kind == "invalid_secret"


async def test_unknown_tenant_from_discovery(make_env: Any, entra: FakeEntra) -> None:
    entra.tenants = {"someone-else"}
    env = await make_env(ok_user)
    with pytest.raises(AuthenticationFailed) as caught:
        await env.graph.get_user("a@contoso.com")
    assert (caught.value.kind, caught.value.aadsts_code) == ("tenant_not_found", 90002)
    assert caught.value.permanent
    # A failed discovery is not cached: the next call tries again.
    entra.tenants = {TENANT}
    assert (await env.graph.get_user("a@contoso.com")).value.id == "u1"


async def test_token_endpoint_unreachable_is_transient(make_env: Any, entra: FakeEntra) -> None:
    def down(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    env = await make_env(ok_user)
    env.registry.http_client.client = httpx.Client(transport=httpx.MockTransport(down))
    with pytest.raises(Transient) as caught:
        await env.graph.get_user("a@contoso.com")
    assert caught.value.code == "token_endpoint_unreachable"
    assert caught.value.retryable
    assert caught.value.client_request_id  # ours, for the history
    env.registry.close()


async def test_token_endpoint_5xx_is_transient(make_env: Any, entra: FakeEntra) -> None:
    entra.token_error = (503, {"error": "temporarily_unavailable"})
    env = await make_env(ok_user)
    with pytest.raises(Transient):
        await env.graph.get_user("a@contoso.com")


def test_changed_secret_builds_a_new_app() -> None:
    http = MsalHttpClient(httpx.Client(transport=httpx.MockTransport(FakeEntra().handler)))
    registry = AuthRegistry(authority_host=LOGIN, graph_url=GRAPH, http_client=http)
    first = registry.provider(GraphCredentials(TENANT, CLIENT_ID, SecretStr(SECRET)))
    again = registry.provider(GraphCredentials(TENANT.upper(), CLIENT_ID, SecretStr(SECRET)))
    rotated = registry.provider(GraphCredentials(TENANT, CLIENT_ID, SecretStr("new")))
    assert first is again
    assert rotated is not first
    assert registry.provider(GraphCredentials(TENANT, CLIENT_ID, SecretStr("new"))) is rotated
    assert SECRET not in repr(GraphCredentials(TENANT, CLIENT_ID, SecretStr(SECRET)))
    registry.close()


async def test_non_microsoft_host_skips_instance_discovery() -> None:
    host = "https://login.sandbox.test:8443"
    entra = FakeEntra(host=host)
    http = MsalHttpClient(httpx.Client(transport=httpx.MockTransport(entra.handler)))
    registry = AuthRegistry(authority_host=host, graph_url=GRAPH, http_client=http)
    provider = registry.provider(GraphCredentials(TENANT, CLIENT_ID, SecretStr(SECRET)))
    assert await provider.token() == "eyJ.token-1"
    assert {r.url.host for r in entra.requests} == {"login.sandbox.test"}
    assert [r.url.path for r in entra.requests] == [
        f"/{TENANT}/v2.0/.well-known/openid-configuration",
        f"/{TENANT}/oauth2/v2.0/token",
    ]
    registry.close()


async def test_concurrent_callers_share_one_acquisition(entra: FakeEntra) -> None:
    http = MsalHttpClient(httpx.Client(transport=httpx.MockTransport(entra.handler)))
    registry = AuthRegistry(authority_host=LOGIN, graph_url=GRAPH, http_client=http)
    provider = registry.provider(GraphCredentials(TENANT, CLIENT_ID, SecretStr(SECRET)))
    tokens = await asyncio.gather(*(provider.token() for _ in range(20)))
    assert set(tokens) == {"eyJ.token-1"}
    assert len(entra.token_requests()) == 1
    registry.close()


def test_scope_follows_graph_host() -> None:
    assert graph_scope("https://graph.microsoft.com/v1.0") == "https://graph.microsoft.com/.default"
    assert graph_scope("https://127.0.0.1:9443/v1.0") == "https://127.0.0.1:9443/.default"


def test_sync_use_is_refused() -> None:
    http = MsalHttpClient(httpx.Client(transport=httpx.MockTransport(FakeEntra().handler)))
    registry = AuthRegistry(authority_host=LOGIN, graph_url=GRAPH, http_client=http)
    auth = registry.auth(GraphCredentials(TENANT, CLIENT_ID, SecretStr(SECRET)))
    with (
        httpx.Client(transport=httpx.MockTransport(lambda r: httpx.Response(200))) as client,
        pytest.raises(RuntimeError),
    ):
        client.get("https://graph.microsoft.com/v1.0/me", auth=auth)
    registry.close()
