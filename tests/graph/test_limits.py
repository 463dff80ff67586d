"""Per-mailbox limits: at most 4 in flight, and a throttled mailbox waits out its Retry-After."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import pytest

from app.graph.errors import Throttled, Transient
from app.graph.limits import MailboxLimiter
from tests.graph.conftest import FakeClock, graph_error, graph_json

ANNA = "anna@contoso.com"
BEN = "ben@contoso.com"
USER = {"id": "u1"}


async def test_fifth_request_waits_while_four_are_in_flight(make_env: Any) -> None:
    release = asyncio.Event()
    in_flight: dict[str, int] = {}
    peak: dict[str, int] = {}
    arrived = asyncio.Condition()

    async def handler(request: httpx.Request) -> httpx.Response:
        mailbox = request.url.path.split("/")[3]
        async with arrived:
            in_flight[mailbox] = in_flight.get(mailbox, 0) + 1
            peak[mailbox] = max(peak.get(mailbox, 0), in_flight[mailbox])
            arrived.notify_all()
        await release.wait()
        in_flight[mailbox] -= 1
        return graph_json(200, USER)

    env = await make_env(handler)
    calls = [asyncio.create_task(env.graph.get_user(ANNA)) for _ in range(6)]
    other = asyncio.create_task(env.graph.get_user(BEN))
    async with arrived:
        await asyncio.wait_for(
            arrived.wait_for(lambda: in_flight.get(ANNA) == 4 and in_flight.get(BEN) == 1), 5
        )
    for _ in range(20):  # give a fifth request every chance to slip through
        await asyncio.sleep(0)
    assert in_flight[ANNA] == 4
    assert env.graph.limiter.in_flight(env.graph.mailbox_key(ANNA)) == 4
    release.set()
    await asyncio.gather(*calls, other)
    assert peak == {"anna@contoso.com": 4, "ben@contoso.com": 1}
    assert len(env.sent) == 7


@pytest.mark.parametrize(
    ("response", "kind", "seconds"),
    [
        (graph_error(429, "TooManyRequests", "Please retry again later.", Retry_After="2.5"),
         Throttled, 2.5),
        (graph_error(503, "serviceNotAvailable", "Unavailable.", Retry_After="30"), Transient, 30),
    ],
)  # fmt: skip
async def test_throttled_mailbox_waits_before_next_send(
    make_env: Any, clock: FakeClock, response: httpx.Response, kind: type[Exception], seconds: float
) -> None:
    sent_at: list[Any] = []
    answers = [response]

    async def handler(request: httpx.Request) -> httpx.Response:
        sent_at.append((request.url.path.split("/")[3], clock.now))
        return answers.pop(0) if answers else graph_json(200, USER)

    env = await make_env(handler)
    start = clock.now
    with pytest.raises(kind):
        await env.graph.get_user(ANNA)
    assert env.graph.mailbox_throttled_until(ANNA) == start + timedelta(seconds=seconds)
    await env.graph.get_user(BEN)  # other mailboxes are not held back
    await env.graph.get_user(ANNA)
    assert sent_at == [
        (ANNA, start),
        (BEN, start),
        (ANNA, start + timedelta(seconds=seconds)),
    ]
    assert clock.slept == [seconds]
    assert env.graph.mailbox_throttled_until(ANNA) is None


async def test_throttle_never_shortens() -> None:
    clock = FakeClock()
    limiter = MailboxLimiter(clock=clock, sleep=clock.sleep)
    long = limiter.throttle("k", 60)
    assert limiter.throttle("k", 5) == long
    assert limiter.seconds_until_free("k") == 60
    async with limiter.slot("k"):
        assert clock.slept == [60]


def test_concurrency_is_configurable() -> None:
    with pytest.raises(ValueError):
        MailboxLimiter(concurrency=0)
    assert MailboxLimiter(concurrency=2).concurrency == 2
