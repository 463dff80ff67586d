"""Outlook throttling per app + mailbox, and injected faults."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import httpx
import pytest

from tests.sandbox.conftest import Setup
from tests.sandbox.schema import assert_graph_error


async def test_fifth_concurrent_request_is_throttled(
    graph: httpx.AsyncClient, setup: Setup
) -> None:
    gate = setup.control.faults.hold(mailbox="max@contoso.example")
    path = f"/v1.0/users/{setup.max_id}/events"
    held = [asyncio.create_task(graph.get(path)) for _ in range(4)]
    assert await asyncio.to_thread(setup.control.throttle.wait_in_flight, setup.max_id, 4)
    fifth = await graph.get(path)
    assert fifth.status_code == 429
    assert_graph_error(fifth.json())
    assert fifth.json()["error"]["code"] == "ApplicationThrottled"
    assert fifth.json()["error"]["message"] == "Application is over its MailboxConcurrency limit."
    # Calendar is among the resources that send Retry-After; whole seconds, as kiota parses them.
    assert fifth.headers["retry-after"] == "1"
    other_mailbox = await graph.get(f"/v1.0/users/{setup.erika_id}/events")
    assert other_mailbox.status_code == 200  # limits are per mailbox
    gate.release()
    assert [r.status_code for r in await asyncio.gather(*held)] == [200] * 4


async def test_window_limit_with_retry_after(graph: httpx.AsyncClient, setup: Setup) -> None:
    path = f"/v1.0/users/{setup.max_id}/events"
    for _ in range(50):  # the fixture lowers 10,000 per 10 minutes to 50
        assert (await graph.get(path)).status_code == 200
    throttled = await graph.get(path)
    assert throttled.status_code == 429
    assert_graph_error(throttled.json())
    assert throttled.json()["error"]["code"] == "TooManyRequests"
    retry_after = float(throttled.headers["retry-after"])
    assert 0 < retry_after <= 600
    setup.control.clock.advance(timedelta(seconds=retry_after))
    assert (await graph.get(path)).status_code == 200


@pytest.mark.parametrize(
    ("kind", "status", "code"),
    [
        ("429", 429, "TooManyRequests"),
        ("503", 503, "serviceNotAvailable"),
        ("504", 504, "UnknownError"),
    ],
)
async def test_status_faults(
    graph: httpx.AsyncClient, setup: Setup, kind: str, status: int, code: str
) -> None:
    setup.control.faults.add(kind, count=1, mailbox="max@contoso.example", retry_after="1.5")  # type: ignore[arg-type]
    failed = await graph.get("/v1.0/users/max@contoso.example/events")
    assert failed.status_code == status
    assert_graph_error(failed.json())
    assert failed.json()["error"]["code"] == code
    assert failed.headers["retry-after"] == "1.5"
    assert (await graph.get("/v1.0/users/max@contoso.example/events")).status_code == 200


async def test_drop_and_timeout(graph: httpx.AsyncClient, setup: Setup) -> None:
    setup.control.faults.add("drop", count=1, path="/events$")
    with pytest.raises(httpx.TransportError):
        await graph.get(f"/v1.0/users/{setup.max_id}/events")
    setup.control.faults.add("timeout", count=1, mailbox=setup.max_id)
    with pytest.raises(httpx.ReadTimeout):
        await graph.get(f"/v1.0/users/{setup.max_id}/events", timeout=0.3)
    assert (await graph.get(f"/v1.0/users/{setup.max_id}/events")).status_code == 200


async def test_seeded_rate_is_deterministic(graph: httpx.AsyncClient, setup: Setup) -> None:
    async def run() -> list[int]:
        setup.control.faults.clear()
        setup.control.faults.seed(42)
        setup.control.faults.add("503", rate=0.5, path="/v1.0/users/")
        return [(await graph.get(f"/v1.0/users/{setup.max_id}")).status_code for _ in range(12)]

    first, second = await run(), await run()
    assert first == second
    assert 200 in first and 503 in first
