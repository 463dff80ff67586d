"""Discovery and the token endpoint: AADSTS errors, a real MSAL client, token expiry, consent and
application access policies as Graph reports them."""

from __future__ import annotations

import asyncio
import re
import ssl
from datetime import timedelta
from typing import Any

import httpx
import msal

from tests.sandbox.conftest import Setup, get_token
from tests.sandbox.schema import assert_graph_error


def _assert_aadsts(response: httpx.Response, status: int, error: str, code: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_codes"] == [code]
    assert body["error_description"].startswith(f"AADSTS{code}: ")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ", body["timestamp"])
    assert body["trace_id"] and body["correlation_id"]
    return body


async def test_token_errors(http: httpx.AsyncClient, setup: Setup) -> None:
    body = _assert_aadsts(
        await get_token(http, setup, tenant="nowhere.example"), 400, "invalid_tenant", 90002
    )
    assert "Tenant 'nowhere.example' not found" in body["error_description"]
    _assert_aadsts(
        await get_token(http, setup, client_id="00000000-0000-0000-0000-000000000001"),
        400,
        "unauthorized_client",
        700016,
    )
    _assert_aadsts(
        await get_token(http, setup, client_secret="wrong"), 401, "invalid_client", 7000215
    )
    setup.control.clock.advance(timedelta(days=731))
    _assert_aadsts(await get_token(http, setup), 401, "invalid_client", 7000222)
    discovery = await http.get("/nowhere.example/v2.0/.well-known/openid-configuration")
    assert discovery.status_code == 400
    assert discovery.json()["error_codes"] == [90002]


async def test_token_success_by_domain(http: httpx.AsyncClient, setup: Setup) -> None:
    response = await get_token(http, setup, tenant="contoso.example")
    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 3599
    assert set(body) == {"token_type", "expires_in", "ext_expires_in", "access_token"}
    assert response.headers["cache-control"] == "no-store, no-cache"


async def test_scope_names_graph_or_the_sandbox_host(http: httpx.AsyncClient, setup: Setup) -> None:
    port = setup.sandbox.port
    # With and without the port: azure-identity and kiota derive `https://{host}/.default`.
    for scope in (f"https://127.0.0.1:{port}/.default", "https://127.0.0.1/.default"):
        response = await get_token(http, setup, scope=scope)
        assert response.status_code == 200, (scope, response.text)
    for scope in ("https://example.com/.default", "https://localhost/.default", "User.Read"):
        body = _assert_aadsts(
            await get_token(http, setup, scope=scope), 400, "invalid_scope", 1002012
        )
        assert f"scope {scope} is not valid" in body["error_description"]


def _msal_token(setup: Setup, tenant: str, calls: int) -> list[dict[str, Any]]:
    with httpx.Client(
        verify=ssl.create_default_context(cafile=str(setup.sandbox.ca_path))
    ) as client:
        app = msal.ConfidentialClientApplication(
            setup.client_id,
            client_credential=setup.secret,
            authority=f"{setup.sandbox.authority_host}/{tenant}",
            instance_discovery=False,
            http_client=client,
            azure_region=None,
        )
        return [
            app.acquire_token_for_client(scopes=["https://graph.microsoft.com/.default"])
            for _ in range(calls)
        ]


async def test_msal_acquires_and_caches_a_token(http: httpx.AsyncClient, setup: Setup) -> None:
    results = await asyncio.to_thread(_msal_token, setup, setup.tenant_id, 3)
    assert all("access_token" in r for r in results), results
    assert [r["token_source"] for r in results] == ["identity_provider", "cache", "cache"]
    assert setup.control.token_requests == 1
    token = results[0]["access_token"]
    response = await http.get(
        f"/v1.0/users/{setup.max_id}/events", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 200


async def test_msal_unknown_tenant_fails_in_discovery(setup: Setup) -> None:
    try:
        await asyncio.to_thread(_msal_token, setup, "nowhere.example", 1)
    except ValueError as exc:
        assert "Unable to get authority configuration" in str(exc)
    else:
        raise AssertionError("MSAL must refuse an unknown tenant")


async def test_graph_401s(http: httpx.AsyncClient, graph: httpx.AsyncClient, setup: Setup) -> None:
    path = f"/v1.0/users/{setup.max_id}/events"
    assert (await graph.get(path)).status_code == 200
    setup.control.clock.advance(timedelta(seconds=3600))
    cases = [
        (None, "Access token is empty."),
        ("Bearer not-a-jwt", "CompactToken parsing failed with error code: 80049217"),
        (
            "Bearer eyJ0eXAiOiJKV1QifQ.eyJhdWQiOiJodHRwczovL2dyYXBoLm1pY3Jvc29mdC5jb20ifQ.c2ln",
            "Access token validation failure. Invalid audience.",
        ),
        (graph.headers["Authorization"], "Access token has expired or is not yet valid."),
    ]
    for header, message in cases:
        headers = {"Authorization": header} if header else {}
        async with httpx.AsyncClient(
            verify=ssl.create_default_context(cafile=str(setup.sandbox.ca_path))
        ) as bare:
            response = await bare.get(setup.sandbox.url + path, headers=headers)
        assert response.status_code == 401
        body = response.json()
        assert_graph_error(body)
        assert body["error"]["code"] == "InvalidAuthenticationToken"
        assert body["error"]["message"] == message
        assert (
            'client_id="00000003-0000-0000-c000-000000000000"'
            in response.headers["www-authenticate"]
        )
        assert response.headers["request-id"] == body["error"]["innerError"]["request-id"]


async def test_missing_consent_is_403(http: httpx.AsyncClient, setup: Setup) -> None:
    setup.control.set_consent(setup.client_id, False)
    token = (await get_token(http, setup)).json()["access_token"]
    response = await http.get(
        f"/v1.0/users/{setup.max_id}/events", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403
    assert_graph_error(response.json())
    assert response.json()["error"] == {
        **response.json()["error"],
        "code": "ErrorAccessDenied",
        "message": "Access is denied. Check credentials and try again.",
    }


async def test_access_policy_is_403(graph: httpx.AsyncClient, setup: Setup) -> None:
    setup.control.block(setup.client_id, "erika@contoso.example")
    blocked = await graph.get("/v1.0/users/erika@contoso.example/events")
    assert blocked.status_code == 403
    assert_graph_error(blocked.json())
    assert blocked.json()["error"]["code"] == "ErrorAccessDenied"
    assert blocked.json()["error"]["message"].startswith("Access to OData is disabled")
    assert (await graph.get("/v1.0/users/max@contoso.example/events")).status_code == 200
