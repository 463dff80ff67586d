"""bookingtime's token flow over HTTPS: both grants in every body encoding, each error, and how the
App API treats missing, expired, refresh, foreign-organisation and revoked tokens."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import httpx
import pytest

from tests.sandbox.bookingtime.conftest import (
    TOKEN,
    World,
    access_token,
    assert_failure,
    refresh_token,
)


def _claims(token: str) -> dict[str, object]:
    payload = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))


@pytest.mark.parametrize("encoding", ["urlencoded", "multipart", "json"])
async def test_both_grants_in_every_encoding(
    http: httpx.AsyncClient, world: World, encoding: str
) -> None:
    async def post(fields: dict[str, str]) -> httpx.Response:
        if encoding == "json":
            return await http.post(TOKEN, json=fields)
        if encoding == "multipart":
            return await http.post(TOKEN, files={k: (None, v) for k, v in fields.items()})
        return await http.post(TOKEN, data=fields)

    first = await post(
        {
            "grant_type": "client_credentials",
            "client_id": world.client_id,
            "client_secret": world.secret,
        }
    )
    assert first.status_code == 200, first.text
    body = first.json()
    assert set(body) == {"refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer" and body["expires_in"] == 2592000
    assert first.headers["cache-control"] == "no-store"

    second = await post(
        {
            "grant_type": "refresh_token",
            "client_id": world.client_id,
            "refresh_token": body["refresh_token"],
            "organization_id": world.org,
        }
    )
    assert second.status_code == 200, second.text
    access = second.json()
    assert set(access) == {"access_token", "token_type", "expires_in"}
    assert access["token_type"] == "Bearer" and access["expires_in"] == 300
    assert _claims(access["access_token"])["organizationId"] == world.org


async def _error(response: httpx.Response, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error", "error_description"}
    assert body["error"] == error
    return str(body["error_description"])


async def test_client_credentials_errors(http: httpx.AsyncClient, world: World) -> None:
    good = {
        "grant_type": "client_credentials",
        "client_id": world.client_id,
        "client_secret": world.secret,
    }
    missing = await http.post(TOKEN, data={k: v for k, v in good.items() if k != "grant_type"})
    assert "grant_type" in await _error(missing, 400, "invalid_request")
    unsupported = await http.post(TOKEN, data={**good, "grant_type": "password"})
    assert "password" in await _error(unsupported, 400, "unsupported_grant_type")
    no_client = await http.post(TOKEN, data={k: v for k, v in good.items() if k != "client_id"})
    assert "client_id" in await _error(no_client, 400, "invalid_request")
    await _error(
        await http.post(TOKEN, data={**good, "client_secret": "wrong"}), 401, "invalid_client"
    )
    await _error(
        await http.post(TOKEN, data={**good, "client_id": "70unknown"}), 401, "invalid_client"
    )
    no_secret = await http.post(TOKEN, data={k: v for k, v in good.items() if k != "client_secret"})
    await _error(no_secret, 401, "invalid_client")
    broken = await http.post(TOKEN, content=b"{", headers={"content-type": "application/json"})
    await _error(broken, 400, "invalid_request")


async def test_refresh_grant_errors(http: httpx.AsyncClient, world: World) -> None:
    refresh = await refresh_token(http, world)
    good = {"grant_type": "refresh_token", "client_id": world.client_id, "refresh_token": refresh}
    no_token = await http.post(TOKEN, data={k: v for k, v in good.items() if k != "refresh_token"})
    assert "refresh_token" in await _error(no_token, 400, "invalid_request")
    await _error(
        await http.post(TOKEN, data={**good, "refresh_token": "x.y.z"}), 400, "invalid_grant"
    )
    await _error(
        await http.post(TOKEN, data={**good, "client_id": "70nobody"}), 401, "invalid_client"
    )
    other_id, _ = world.control.add_app()
    stolen = await http.post(TOKEN, data={**good, "client_id": other_id})
    await _error(stolen, 400, "invalid_grant")
    not_permitted = await http.post(TOKEN, data={**good, "organization_id": world.other_org})
    assert world.other_org in await _error(not_permitted, 403, "access_denied")
    unknown_org = await http.post(TOKEN, data={**good, "organization_id": "f6" + "x" * 30})
    await _error(unknown_org, 403, "access_denied")
    # An access token is no refresh token.
    access = await access_token(http, world, world.org)
    await _error(
        await http.post(TOKEN, data={**good, "refresh_token": access}), 400, "invalid_grant"
    )

    world.sandbox.control.clock.advance(timedelta(days=30))
    await _error(await http.post(TOKEN, data=good), 400, "invalid_grant")


async def test_token_requests_are_counted_by_grant_and_organization(
    http: httpx.AsyncClient, world: World
) -> None:
    await access_token(http, world, world.org)
    await access_token(http, world)
    counts = world.control.token_requests
    assert counts[("client_credentials", None)] == 2
    assert counts[("refresh_token", world.org)] == 1
    assert counts[("refresh_token", None)] == 1


async def test_api_wants_a_bearer_access_token(http: httpx.AsyncClient, world: World) -> None:
    path = world.api("bookingResource/list")
    assert "Bearer" in assert_failure(await http.get(path), 401)
    refresh = await refresh_token(http, world)
    as_bearer = await http.get(path, headers={"Authorization": f"Bearer {refresh}"})
    assert "refresh token" in assert_failure(as_bearer, 401)
    unknown = await http.get(path, headers={"Authorization": "Bearer e30.e30.AAAA"})
    assert_failure(unknown, 401)
    assert unknown.headers["www-authenticate"] == "Bearer"


async def test_access_token_expires_on_the_sandbox_clock(
    http: httpx.AsyncClient, world: World
) -> None:
    headers = {"Authorization": f"Bearer {await access_token(http, world, world.org)}"}
    path = world.api("bookingResource/list")
    world.sandbox.control.clock.advance(timedelta(seconds=299))
    assert (await http.get(path, headers=headers)).status_code == 200
    world.sandbox.control.clock.advance(timedelta(seconds=1))
    assert "expired" in assert_failure(await http.get(path, headers=headers), 401)


async def test_shorter_token_lifetimes(http: httpx.AsyncClient, world: World) -> None:
    world.control.set_token_lifetimes(access=timedelta(seconds=60), refresh=timedelta(hours=1))
    refresh = await http.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_id": world.client_id,
            "client_secret": world.secret,
        },
    )
    assert refresh.json()["expires_in"] == 3600
    access = await http.post(
        TOKEN,
        data={
            "grant_type": "refresh_token",
            "client_id": world.client_id,
            "refresh_token": refresh.json()["refresh_token"],
        },
    )
    assert access.json()["expires_in"] == 60


async def test_token_is_bound_to_its_organization(http: httpx.AsyncClient, world: World) -> None:
    world.control.permit(world.client_id, world.other_org)
    for_org = {"Authorization": f"Bearer {await access_token(http, world, world.org)}"}
    on_other = await http.get(
        world.api("bookingResource/list", org=world.other_org), headers=for_org
    )
    assert "organization" in assert_failure(on_other, 403)
    unbound = {"Authorization": f"Bearer {await access_token(http, world)}"}
    assert_failure(await http.get(world.api("bookingResource/list"), headers=unbound), 403)
    unknown = await http.get(
        world.api("bookingResource/list", org="f6" + "0" * 30), headers=for_org
    )
    assert_failure(unknown, 404, "organizationId")
    assert (await http.get(world.api("bookingResource/list"), headers=for_org)).status_code == 200


async def test_revoked_permission_stops_issued_tokens(
    http: httpx.AsyncClient, world: World
) -> None:
    headers = {"Authorization": f"Bearer {await access_token(http, world, world.org)}"}
    world.control.permit(world.client_id, world.org, allowed=False)
    assert "not permitted" in assert_failure(
        await http.get(world.api("employee/list"), headers=headers), 403
    )


async def test_locale_may_be_two_letters_or_a_full_tag(
    api: httpx.AsyncClient, world: World
) -> None:
    for locale in ("de", "en", "en_EN", "de_DE"):
        response = await api.get(world.api("bookingResource/list", locale=locale))
        assert response.status_code == 200, locale
    assert_failure(await api.get(world.api("bookingResource/list", locale="deutsch")), 404)
