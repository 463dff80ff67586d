"""GraphHttp: each mailbox's requests go through its own shard's connection pool."""

from __future__ import annotations

from collections import Counter
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.config import Settings
from app.graph.auth import AuthRegistry, GraphCredentials, MsalHttpClient
from app.graph.client import GraphClient, GraphHttp
from app.graph.limits import MailboxLimiter
from tests.graph.conftest import CLIENT_ID, GRAPH, LOGIN, SECRET, TENANT, FakeClock, FakeEntra


def _shard_transports(count: int, seen: Counter[tuple[int, str]]) -> list[httpx.MockTransport]:
    def handler(shard: int) -> httpx.MockTransport:
        def answer(request: httpx.Request) -> httpx.Response:
            seen[(shard, request.url.path.split("/")[3])] += 1
            return httpx.Response(204)

        return httpx.MockTransport(answer)

    return [handler(shard) for shard in range(count)]


def test_a_mailbox_always_maps_to_one_shard_and_mailboxes_spread() -> None:
    transports = [httpx.MockTransport(lambda _request: httpx.Response(204)) for _ in range(8)]
    http = GraphHttp(transports)
    mailboxes = [f"person{n}@contoso.example" for n in range(64)]
    shards = {m: http.for_mailbox(m) for m in mailboxes}
    assert all(http.for_mailbox(m.upper()) is shards[m] for m in mailboxes)  # case-insensitive
    assert len({id(transport) for transport in shards.values()}) == 8
    assert http.for_mailbox(None) is http.for_mailbox(None) is transports[0]


async def test_requests_go_through_the_mailboxs_shard(entra: FakeEntra, clock: FakeClock) -> None:
    seen: Counter[tuple[int, str]] = Counter()
    http = GraphHttp(_shard_transports(4, seen))
    msal_http = MsalHttpClient(httpx.Client(transport=httpx.MockTransport(entra.handler)))
    registry = AuthRegistry(authority_host=LOGIN, graph_url=GRAPH, http_client=msal_http)
    graph = GraphClient(
        http,
        registry.auth(GraphCredentials(TENANT, CLIENT_ID, SecretStr(SECRET))),
        graph_url=GRAPH,
        limiter=MailboxLimiter(clock=clock, sleep=clock.sleep),
    )
    mailboxes = [f"person{n}@contoso.example" for n in range(12)]
    try:
        for mailbox in mailboxes * 2:
            await graph.delete_event(mailbox, "AAMkAD=")
    finally:
        await http.aclose()
        registry.close()
    shard_of = {mailbox: shard for (shard, mailbox) in seen}
    assert len(shard_of) == len(mailboxes) == len(seen)  # each mailbox used one shard only
    assert all(count == 2 for count in seen.values())
    assert len(set(shard_of.values())) > 1


def test_build_makes_shards_sharing_one_ssl_context(settings: Settings) -> None:
    http = GraphHttp.build(settings, shards=3)
    shards = {id(http.for_mailbox(f"p{n}@contoso.example")) for n in range(40)}
    assert len(shards) == 3


@pytest.mark.parametrize(
    ("method", "params", "json"),
    [
        ("GET", None, None),
        ("GET", {"$select": "id,subject", "$top": "5"}, None),
        ("POST", None, {"subject": "Zahnreinigung – Müller", "n": [1, 2.5, None, True]}),
        ("PATCH", None, {"body": {"content": "Line 1\nLine 2 \u2028 ☺"}}),
        ("DELETE", None, None),
    ],
)
async def test_requests_are_built_as_an_httpx_client_builds_them(
    method: str, params: dict[str, str] | None, json: Any
) -> None:
    """The direct build and an httpx client's (same timeout) agree on every byte sent."""
    timeout = httpx.Timeout(12.0, connect=3.0)
    transports = [httpx.MockTransport(lambda _request: httpx.Response(204)) for _ in range(2)]
    http = GraphHttp(transports, timeout=timeout)
    mailbox = "max@contoso.example"
    url = f"{GRAPH}/users/{mailbox}/events/AAMk%3D%3D"
    headers = [("client-request-id", "1f0e"), ("Prefer", 'IdType="ImmutableId"'), ("Prefer", "x")]
    for _ in range(2):  # the second time from the parsed URL remembered
        ours, transport = http.request(
            mailbox, method, url, params=params, json=json, headers=headers
        )
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False) as client:
            theirs = client.build_request(method, url, params=params, json=json, headers=headers)
        assert transport is http.for_mailbox(mailbox)
        assert (ours.method, str(ours.url)) == (theirs.method, str(theirs.url))
        assert sorted(ours.headers.multi_items()) == sorted(theirs.headers.multi_items())
        assert ours.read() == theirs.read()
        assert ours.extensions == theirs.extensions == {"timeout": timeout.as_dict()}
