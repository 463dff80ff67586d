"""GraphHttp: a mailbox's requests always go through one of the process's clients, and the
mailboxes spread over all of them."""

from __future__ import annotations

import httpx
import pytest

from app.graph.sender import GraphHttp


async def test_a_mailbox_keeps_its_client_and_mailboxes_spread_over_all() -> None:
    clients = [httpx.AsyncClient() for _ in range(4)]
    http = GraphHttp(clients)
    try:
        assert http.for_mailbox("Max@Contoso.example") is http.for_mailbox("max@contoso.example")
        assert http.for_mailbox(None) is clients[0]
        used = {id(http.for_mailbox(f"user{n}@contoso.example")) for n in range(200)}
        assert used == {id(client) for client in clients}
    finally:
        await http.aclose()
    assert all(client.is_closed for client in clients)


def test_at_least_one_client() -> None:
    with pytest.raises(ValueError, match="at least one"):
        GraphHttp([])
