"""Token endpoint answers that are not Entra's OAuth error body are classified, not crashed on."""

from __future__ import annotations

from typing import Any

import pytest

from app.graph.errors import Transient
from tests.graph.conftest import FakeEntra, graph_json


async def test_graph_style_error_envelope_from_the_token_endpoint_is_transient_and_passes(
    make_env: Any, entra: FakeEntra
) -> None:
    # What a gateway (or the sandbox's fault injection) sends on a 429: Graph's error envelope,
    # whose `error` is an object. It used to escape as TypeError (an unhashable dict), skipping
    # the sync history and the retry classification; and MSAL's telemetry, which keeps the
    # error, then failed every later token request of the connection with a TypeError too.
    body = {"error": {"code": "TooManyRequests", "message": "Please retry again later."}}
    entra.token_error = (429, body)

    async def user(request: Any) -> Any:
        return graph_json(200, {"id": "u1", "displayName": "Dana", "mail": "a@contoso.com"})

    env = await make_env(user)
    with pytest.raises(Transient) as caught:
        await env.graph.get_user("a@contoso.com")
    assert caught.value.retryable
    assert caught.value.code == "token_endpoint_error"
    assert "TooManyRequests" in caught.value.message
    assert env.sent == []

    entra.token_error = None
    result = await env.graph.get_user("a@contoso.com")
    assert result.value.id == "u1"
