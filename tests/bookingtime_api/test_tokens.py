"""The two-step token flow against the emulator over real HTTPS: one refresh token per app, one
access token per organisation reused for ~4 minutes, shared by concurrent callers, renewed on a
401, never sent to another organisation's URL. The refusal paths the emulator cannot stage are
driven through an httpx.MockTransport."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.bookingtime_api import (
    AppCredentials,
    BookingtimeClient,
    CredentialsRefused,
    iso_week,
)
from tests.bookingtime_api.conftest import BERLIN, MakeClient, Setup
from tests.bookingtime_api.samples import ORG

CC = "client_credentials"
RT = "refresh_token"


async def _this_week(client: BookingtimeClient, setup: Setup, org: str) -> None:
    await client.list_week(org, *iso_week(setup.now(), BERLIN))


async def test_concurrent_callers_share_one_token_request_per_organisation(
    client: BookingtimeClient, setup: Setup
) -> None:
    await asyncio.gather(
        *[_this_week(client, setup, org) for org in [setup.org, setup.other_org] * 10]
    )
    assert setup.token_requests == {(CC, None): 1, (RT, setup.org): 1, (RT, setup.other_org): 1}


async def test_the_access_token_is_reused_for_four_minutes_not_fetched_per_request(
    client: BookingtimeClient, setup: Setup
) -> None:
    # A poll every 30 s for 20 minutes: 41 polls, a new access token every 240 s.
    for _ in range(41):
        await _this_week(client, setup, setup.org)
        await _this_week(client, setup, setup.org)
        setup.sandbox.control.clock.advance(timedelta(seconds=30))
    assert setup.token_requests == {(CC, None): 1, (RT, setup.org): 6}


async def test_the_refresh_token_is_renewed_a_day_before_its_30_days(
    client: BookingtimeClient, setup: Setup
) -> None:
    clock = setup.sandbox.control.clock
    await _this_week(client, setup, setup.org)
    clock.advance(timedelta(days=28, hours=23))
    await _this_week(client, setup, setup.org)
    assert setup.token_requests[(CC, None)] == 1
    clock.advance(timedelta(hours=1, seconds=1))  # 29 days after it was issued
    await _this_week(client, setup, setup.org)
    assert setup.token_requests == {(CC, None): 2, (RT, setup.org): 3}


async def test_a_401_mints_one_new_token_and_resends_once(
    make_client: MakeClient, setup: Setup
) -> None:
    # The client's clock stands still, so it believes its token valid when bookingtime no
    # longer does.
    frozen = setup.now()
    client = make_client(clock=lambda: frozen)
    await _this_week(client, setup, setup.org)
    setup.sandbox.control.clock.advance(timedelta(seconds=301))
    window = await client.list_week(setup.org, *iso_week(frozen, BERLIN))
    assert window.appointments == []
    assert setup.token_requests == {(CC, None): 1, (RT, setup.org): 2}


def _claims(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    decoded: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return decoded


async def test_a_token_of_one_organisation_is_never_sent_to_another(
    http: httpx.AsyncClient, client: BookingtimeClient, setup: Setup
) -> None:
    sent: list[tuple[str, str]] = []

    async def record(request: httpx.Request) -> None:
        if "/organization/" in request.url.path:
            org = request.url.path.split("/organization/")[1].split("/")[0]
            sent.append((org, request.headers["Authorization"].removeprefix("Bearer ")))

    http.event_hooks["request"].append(record)
    clock = setup.sandbox.control.clock
    for step in range(12):
        first, second = (setup.org, setup.other_org) if step % 2 else (setup.other_org, setup.org)
        await asyncio.gather(
            _this_week(client, setup, first), client.list_booking_resources(second)
        )
        clock.advance(timedelta(seconds=50))
    assert {org for org, _ in sent} == {setup.org, setup.other_org}
    # The emulator's tokens carry their organisation (as bookingtime's JWTs do).
    assert all(_claims(token)["organizationId"] == org for org, token in sent)
    tokens_of = {
        org: {token for o, token in sent if o == org} for org in (setup.org, setup.other_org)
    }
    assert not tokens_of[setup.org] & tokens_of[setup.other_org]
    assert setup.token_requests[(RT, setup.org)] == setup.token_requests[(RT, setup.other_org)] == 3


# --- refusals, through a MockTransport ----------------------------------------------------------

AUTH_URL = "https://auth.bookingtime.test/oauth/token"
API_URL = "https://api.bookingtime.test/app/v3/"
LIST = {"class": "LIST", "recordTotal": 0, "recordLimit": 9999, "recordList": []}


class Refusing:
    """A token endpoint that refuses the first `refuse_refresh` refresh grants (invalid_grant)
    and an API that answers 401 to the first `refuse_api` requests."""

    def __init__(self, *, refuse_refresh: int = 0, refuse_api: int = 0) -> None:
        self.refuse_refresh, self.refuse_api = refuse_refresh, refuse_api
        self.grants: list[str] = []
        self.api_tokens: list[str] = []
        self.issued = 0
        self.revoked: set[str] = set()
        self.hold, self.holding, self.release = 1, 0, asyncio.Event()

    async def __call__(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("Authorization") in self.revoked:
            # Refusals of a revoked token are held until `hold` requests carry it: they were
            # all sent before any of them was refused.
            self.holding += 1
            if self.holding >= self.hold:
                self.release.set()
            await self.release.wait()
        return self.answer(request)

    def answer(self, request: httpx.Request) -> httpx.Response:
        if str(request.url) == AUTH_URL:
            form = dict(x.split("=") for x in request.content.decode().split("&"))
            self.grants.append(form["grant_type"])
            self.issued += 1
            if form["grant_type"] == CC:
                assert form["client_secret"] == "s3cret-value"
                return httpx.Response(
                    200, json={"refresh_token": f"refresh-{self.issued}", "expires_in": 2592000}
                )
            assert "client_secret" not in form and form["organization_id"] == ORG
            if self.refuse_refresh > 0:
                self.refuse_refresh -= 1
                body = {"error": "invalid_grant", "error_description": "Unknown refresh token."}
                return httpx.Response(400, json=body)
            return httpx.Response(
                200, json={"access_token": f"access-{self.issued}", "expires_in": 300}
            )
        token = request.headers["Authorization"]
        self.api_tokens.append(token)
        if self.refuse_api > 0 or token in self.revoked:
            self.refuse_api -= 1
            failure = {"class": "MESSAGE", "type": "failure", "parameter": None, "text": "Invalid."}
            return httpx.Response(401, json={"messageList": [failure], "content": []})
        return httpx.Response(200, json={"messageList": [], "content": LIST})


def _mock_client(server: Refusing) -> BookingtimeClient:
    return BookingtimeClient(
        httpx.AsyncClient(transport=httpx.MockTransport(server)),
        AppCredentials("70MockApp", SecretStr("s3cret-value")),
        api_url=API_URL,
        auth_url=AUTH_URL,
        locale="de",
        clock=lambda: datetime(2026, 12, 7, tzinfo=UTC),
    )


async def test_a_refused_refresh_token_is_renewed_once() -> None:
    server = Refusing(refuse_refresh=1)
    await _mock_client(server).list_employees(ORG)
    assert server.grants == [CC, RT, CC, RT]
    assert server.api_tokens == ["Bearer access-4"]


async def test_a_refresh_token_refused_again_after_renewal_is_credentials_refused() -> None:
    server = Refusing(refuse_refresh=2)
    with pytest.raises(CredentialsRefused, match="refresh_token grant"):
        await _mock_client(server).list_employees(ORG)
    assert server.grants == [CC, RT, CC, RT]
    assert server.api_tokens == []


async def test_an_api_that_keeps_refusing_fresh_tokens_is_asked_twice_only() -> None:
    server = Refusing(refuse_api=5)
    with pytest.raises(CredentialsRefused, match="refused a fresh access token"):
        await _mock_client(server).list_employees(ORG)
    assert server.grants == [CC, RT, RT]
    assert server.api_tokens == ["Bearer access-2", "Bearer access-3"]


async def test_concurrent_401s_share_one_new_token() -> None:
    server = Refusing()
    client = _mock_client(server)
    await client.list_employees(ORG)
    server.revoked.add(server.api_tokens[-1])
    server.hold = 3
    server.grants.clear()
    await asyncio.gather(*[client.list_employees(ORG) for _ in range(3)])
    # Three 401s for the same token: one new token for all three resends.
    assert server.grants == [RT]
    assert sorted(server.api_tokens[1:]) == ["Bearer access-2"] * 3 + ["Bearer access-3"] * 3
