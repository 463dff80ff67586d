"""Failed admin authentications are limited per client address (in this process's memory)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from app.admin.auth import FAILURE_WINDOW_SECONDS, MAX_FAILURES, AuthFailureLimiter, create_token
from app.db import Database
from tests.helpers import assert_problem

URL = "/api/v1/connections"
WRONG = {"Authorization": "Bearer cbt_wrong-guess"}


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(app: FastAPI) -> Clock:
    clock = Clock()
    app.state.auth_failure_limiter = AuthFailureLimiter(clock=clock)
    return clock


@pytest.fixture
async def other_client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app, client=("203.0.113.9", 40000))
    async with httpx.AsyncClient(transport=transport, base_url="http://calbridge.test") as c:
        yield c


async def test_too_many_failures_block_the_address_with_retry_after(
    client: httpx.AsyncClient,
    other_client: httpx.AsyncClient,
    clock: Clock,
) -> None:
    for _ in range(MAX_FAILURES):
        assert_problem(await client.get(URL, headers=WRONG), 401, "unauthorized")
        clock.now += 1

    blocked = await client.get(URL, headers=WRONG)
    body = assert_problem(blocked, 429, "too_many_requests")
    assert "failed authentications" in body["detail"]
    retry_after = int(blocked.headers["retry-after"])
    assert 0 < retry_after <= FAILURE_WINDOW_SECONDS
    # Another address is not affected.
    assert_problem(await other_client.get(URL, headers=WRONG), 401, "unauthorized")

    # Once the oldest failures leave the window, the address may try again.
    clock.now += retry_after
    assert_problem(await client.get(URL, headers=WRONG), 401, "unauthorized")


async def test_a_valid_token_is_never_locked_out(
    client: httpx.AsyncClient, database: Database, admin_headers: dict[str, str], clock: Clock
) -> None:
    # Issue 18: ten bad tokens from an address used to make the admin's good token 429 for 60 s.
    stored = {"Authorization": f"Bearer {await stored_token(database)}"}
    for _ in range(MAX_FAILURES):
        assert_problem(await client.get(URL, headers=WRONG), 401, "unauthorized")
    for headers in (admin_headers, stored):
        assert (await client.get(URL, headers=headers)).status_code == 200
    # The good tokens neither lifted the block nor counted: an eleventh bad token is refused.
    blocked = assert_problem(await client.get(URL, headers=WRONG), 429, "too_many_requests")
    assert "retry in" in blocked["detail"]
    assert (await client.get(URL, headers=admin_headers)).status_code == 200
    # A request without a token is told to send one, not to wait.
    assert_problem(await client.get(URL), 401, "unauthorized")


async def test_x_forwarded_for_does_not_pick_the_address(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    # Only uvicorn may replace the peer address, and only for CALBRIDGE_TRUSTED_PROXIES; the
    # limiter itself never reads the header, so a fresh address per guess buys nothing.
    for n in range(MAX_FAILURES):
        headers = {**WRONG, "X-Forwarded-For": f"198.51.100.{n}"}
        assert_problem(await client.get(URL, headers=headers), 401, "unauthorized")
    headers = {**WRONG, "X-Forwarded-For": "198.51.100.200"}
    assert_problem(await client.get(URL, headers=headers), 429, "too_many_requests")


async def stored_token(database: Database) -> str:
    async with database.session_scope() as session:
        return await create_token(session, name="ops")


async def test_successes_and_missing_tokens_do_not_count(
    client: httpx.AsyncClient, admin_headers: dict[str, str], clock: Clock
) -> None:
    for _ in range(MAX_FAILURES - 1):
        assert_problem(await client.get(URL, headers=WRONG), 401, "unauthorized")
    for _ in range(3 * MAX_FAILURES):
        assert (await client.get(URL, headers=admin_headers)).status_code == 200
        assert_problem(await client.get(URL), 401, "unauthorized")
    # Still one failure short of the limit.
    assert_problem(await client.get(URL, headers=WRONG), 401, "unauthorized")
    assert_problem(await client.get(URL, headers=WRONG), 429, "too_many_requests")


async def test_failures_spread_over_more_than_a_window_are_not_blocked(
    client: httpx.AsyncClient, clock: Clock
) -> None:
    for _ in range(3 * MAX_FAILURES):
        assert_problem(await client.get(URL, headers=WRONG), 401, "unauthorized")
        clock.now += FAILURE_WINDOW_SECONDS / (MAX_FAILURES - 1)


async def test_the_default_limiter_blocks_too(client: httpx.AsyncClient) -> None:
    # No limiter installed by the test: the app makes its own on first use.
    statuses = [(await client.get(URL, headers=WRONG)).status_code for _ in range(MAX_FAILURES + 2)]
    assert statuses == [401] * MAX_FAILURES + [429, 429]


async def test_webhook_intake_is_not_limited(client: httpx.AsyncClient, clock: Clock) -> None:
    for _ in range(MAX_FAILURES + 1):
        await client.get(URL, headers=WRONG)
    assert_problem(await client.get(URL, headers=WRONG), 429, "too_many_requests")
    response = await client.post("/webhooks/bookingtime/f6unknown", content=b"{}")
    assert response.status_code != 429


def test_memory_stays_bounded() -> None:
    clock = Clock()
    limiter = AuthFailureLimiter(clock=clock, max_failures=2)
    for n in range(100_005):
        limiter.failed(f"10.{n >> 16}.{(n >> 8) & 255}.{n & 255}")
    assert len(limiter._failures) <= 100_001
    assert limiter.retry_after("10.0.0.1") is None
