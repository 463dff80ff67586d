"""The sandbox's fault rules on bookingtime paths: status faults in bookingtime's shapes, a proxy's
HTML 500 page, a truncated JSON body, cut and hung connections, and slow responses."""

from __future__ import annotations

import json
import time

import httpx
import pytest

from app.sandbox.faults import FaultKind
from tests.sandbox.bookingtime.conftest import TOKEN, World, assert_failure
from tests.sandbox.conftest import Setup

API = r"^/bookingtime/app/"


@pytest.mark.parametrize("kind", ["429", "500", "503", "504"])
async def test_status_faults_answer_in_the_envelope(
    api: httpx.AsyncClient, world: World, kind: FaultKind
) -> None:
    world.sandbox.control.faults.add(kind, count=1, path=API, retry_after="3")
    url = world.api("bookingResource/list")
    failed = await api.get(url)
    assert_failure(failed, int(kind))
    if kind != "500":
        assert failed.headers["retry-after"] == "3"
    assert "request-id" not in failed.headers and "x-ms-request-id" not in failed.headers
    assert (await api.get(url)).status_code == 200  # the rule fired once


async def test_token_endpoint_faults_answer_like_the_auth_server(
    http: httpx.AsyncClient, world: World
) -> None:
    world.sandbox.control.faults.add("429", count=1, path=TOKEN, retry_after="2")
    response = await http.post(TOKEN, data={"grant_type": "client_credentials"})
    assert response.status_code == 429 and response.headers["retry-after"] == "2"
    assert response.json()["error"] == "too_many_requests"


async def test_html_500_page(api: httpx.AsyncClient, world: World) -> None:
    world.sandbox.control.faults.add("html500", count=1, path=API)
    response = await api.get(world.api("bookingResource/list"))
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")
    assert "<h1>500 Internal Server Error</h1>" in response.text
    with pytest.raises(json.JSONDecodeError):
        response.json()


async def test_truncated_json_body(api: httpx.AsyncClient, world: World) -> None:
    url = world.api("bookingResource/list")
    whole = (await api.get(url)).content
    world.sandbox.control.faults.add("truncated", count=1, path=API)
    cut = await api.get(url)
    assert cut.status_code == 200
    assert cut.content == whole[: len(whole) // 2]
    assert int(cut.headers["content-length"]) == len(cut.content)
    with pytest.raises(json.JSONDecodeError):
        cut.json()
    assert (await api.get(url)).content == whole


async def test_drop_timeout_and_latency(api: httpx.AsyncClient, world: World) -> None:
    url = world.api("employee/list")
    faults = world.sandbox.control.faults
    faults.add("drop", count=1, path=API)
    with pytest.raises(httpx.TransportError):
        await api.get(url)
    faults.add("timeout", count=1, path=API)
    with pytest.raises(httpx.ReadTimeout):
        await api.get(url, timeout=0.3)
    faults.add("latency", count=1, path=API, seconds=0.4)
    started = time.monotonic()
    slow = await api.get(url)
    assert slow.status_code == 200 and time.monotonic() - started >= 0.4


async def test_response_faults_over_http_and_never_by_mailbox(
    api: httpx.AsyncClient, world: World
) -> None:
    added = await api.post("/_sandbox/faults", json={"kind": "html500", "count": 1, "path": API})
    assert added.status_code == 201 and added.json()["kind"] == "html500"
    assert (await api.get(world.api("employee/list"))).status_code == 500
    with pytest.raises(ValueError, match="by path"):
        world.sandbox.control.faults.add("truncated", mailbox="max@contoso.example")
    by_mailbox = {"kind": "truncated", "mailbox": "max@contoso.example"}
    assert (await api.post("/_sandbox/faults", json=by_mailbox)).status_code == 400


async def test_graph_paths_get_their_own_500(graph: httpx.AsyncClient, setup: Setup) -> None:
    setup.control.faults.add("500", count=1, path="/events$")
    failed = await graph.get(f"/v1.0/users/{setup.max_id}/events")
    assert failed.status_code == 500
    assert failed.json()["error"]["code"] == "generalException"
    setup.control.faults.add("html500", count=1, path="/events$")
    page = await graph.get(f"/v1.0/users/{setup.max_id}/events")
    assert page.status_code == 500 and page.headers["content-type"].startswith("text/html")
    assert (await graph.get(f"/v1.0/users/{setup.max_id}/events")).status_code == 200
