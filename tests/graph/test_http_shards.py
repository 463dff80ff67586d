"""GraphHttp: each mailbox's requests go through its own shard's connection pool."""

from __future__ import annotations

from collections import Counter

import httpx
from pydantic import SecretStr

from app.config import Settings
from app.graph.auth import AuthRegistry, GraphCredentials, MsalHttpClient
from app.graph.client import GraphClient, GraphHttp
from app.graph.limits import MailboxLimiter
from tests.graph.conftest import CLIENT_ID, GRAPH, LOGIN, SECRET, TENANT, FakeClock, FakeEntra


def _shard_clients(count: int, seen: Counter[tuple[int, str]]) -> list[httpx.AsyncClient]:
    def handler(shard: int) -> httpx.MockTransport:
        def answer(request: httpx.Request) -> httpx.Response:
            seen[(shard, request.url.path.split("/")[3])] += 1
            return httpx.Response(204)

        return httpx.MockTransport(answer)

    return [httpx.AsyncClient(transport=handler(shard)) for shard in range(count)]


def test_a_mailbox_always_maps_to_one_shard_and_mailboxes_spread() -> None:
    http = GraphHttp([httpx.AsyncClient() for _ in range(8)])
    mailboxes = [f"person{n}@contoso.example" for n in range(64)]
    shards = {m: http.for_mailbox(m) for m in mailboxes}
    assert all(http.for_mailbox(m.upper()) is shards[m] for m in mailboxes)  # case-insensitive
    assert len({id(client) for client in shards.values()}) == 8
    assert http.for_mailbox(None) is http.for_mailbox(None)


async def test_requests_go_through_the_mailboxs_shard(entra: FakeEntra, clock: FakeClock) -> None:
    seen: Counter[tuple[int, str]] = Counter()
    clients = _shard_clients(4, seen)
    msal_http = MsalHttpClient(httpx.Client(transport=httpx.MockTransport(entra.handler)))
    registry = AuthRegistry(authority_host=LOGIN, graph_url=GRAPH, http_client=msal_http)
    graph = GraphClient(
        GraphHttp(clients),
        registry.auth(GraphCredentials(TENANT, CLIENT_ID, SecretStr(SECRET))),
        graph_url=GRAPH,
        limiter=MailboxLimiter(clock=clock, sleep=clock.sleep),
    )
    mailboxes = [f"person{n}@contoso.example" for n in range(12)]
    try:
        for mailbox in mailboxes * 2:
            await graph.delete_event(mailbox, "AAMkAD=")
    finally:
        for client in clients:
            await client.aclose()
        registry.close()
    shard_of = {mailbox: shard for (shard, mailbox) in seen}
    assert len(shard_of) == len(mailboxes) == len(seen)  # each mailbox used one shard only
    assert all(count == 2 for count in seen.values())
    assert len(set(shard_of.values())) > 1


def test_build_makes_shards_sharing_one_ssl_context(settings: Settings) -> None:
    http = GraphHttp.build(settings, shards=3)
    clients = {id(http.for_mailbox(f"p{n}@contoso.example")) for n in range(40)}
    assert len(clients) == 3


def test_over_transports_pairs_each_shards_client_with_its_transport() -> None:
    transports = [httpx.MockTransport(lambda _request: httpx.Response(204)) for _ in range(4)]
    http = GraphHttp.over(transports)
    mailboxes = [f"person{n}@contoso.example" for n in range(32)]
    for mailbox in mailboxes:
        client = http.for_mailbox(mailbox)
        assert http.transport_for(mailbox) is transports[http._clients.index(client)]
    assert len({id(http.transport_for(m)) for m in mailboxes}) == 4
    assert GraphHttp([httpx.AsyncClient()]).transport_for("a@contoso.example") is None
