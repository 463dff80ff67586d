"""`POST /v1.0/$batch` over HTTPS: validation, per-item results, dependsOn and 424, and auth,
policy, faults and throttling applied to each item on its own."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.config import Settings
from app.graph.auth import AuthRegistry, GraphCredentials, build_msal_http_client
from app.graph.client import GraphClient
from app.graph.limits import MailboxLimiter
from app.graph.schemas import BatchRequest
from app.graph.sender import build_http_client
from app.sandbox import SandboxServer
from tests.sandbox.conftest import Setup, get_token
from tests.sandbox.schema import assert_event, assert_graph_error

BATCH = "/v1.0/$batch"
JSON = {"Content-Type": "application/json"}


def event(subject: str, tx: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {
        "subject": subject,
        "start": {"dateTime": "2026-12-01T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2026-12-01T11:00:00", "timeZone": "UTC"},
    }
    if tx is not None:
        body["transactionId"] = tx
    return body


def item(item_id: str, method: str, url: str, body: Any = None, **extra: Any) -> dict[str, Any]:
    request: dict[str, Any] = {"id": item_id, "method": method, "url": url, **extra}
    if body is not None:
        request["body"] = body
        request.setdefault("headers", {}).update(JSON)
    return request


async def run_batch(graph: httpx.AsyncClient, *requests: dict[str, Any]) -> dict[str, Any]:
    response = await graph.post(BATCH, json={"requests": list(requests)})
    assert response.status_code == 200, response.text
    assert response.headers["odata-version"] == "4.0"
    assert "request-id" in response.headers
    items = response.json()["responses"]
    assert sorted(r["id"] for r in items) == sorted(r["id"] for r in requests)
    by_id = {r["id"]: r for r in items}
    for result in items:
        assert set(result) == {"id", "status", "headers", "body"}
        if result["status"] >= 400:
            assert_graph_error(result["body"])
    return by_id


def code(result: dict[str, Any]) -> str:
    return str(result["body"]["error"]["code"])


async def test_crud_across_two_mailboxes(graph: httpx.AsyncClient, setup: Setup) -> None:
    max_events = f"/users/{setup.max_id}/events"
    erika_events = "/users/erika@contoso.example/events"
    prefer = {"Prefer": 'IdType="ImmutableId", outlook.timezone="W. Europe Standard Time"'}
    created = await run_batch(
        graph,
        item("1", "POST", max_events, event("one", "tx-1"), headers=dict(prefer)),
        item("2", "POST", max_events, event("two")),
        item("3", "post", erika_events, event("three")),  # methods compare ignoring case
    )
    for key in "123":
        assert created[key]["status"] == 201, created[key]
        assert_event(created[key]["body"])
        assert created[key]["headers"]["Content-Type"].startswith("application/json")
        assert created[key]["headers"]["OData-Version"] == "4.0"
    # The item's own Prefer (comma-joined, as the client sends it) is honoured per item.
    assert created["1"]["headers"]["Preference-Applied"]
    assert created["1"]["body"]["start"]["timeZone"] == "W. Europe Standard Time"
    assert created["2"]["body"]["start"]["timeZone"] == "UTC"
    one, three = created["1"]["body"]["id"], created["3"]["body"]["id"]

    changed = await run_batch(
        graph,
        item("get", "GET", f"{max_events}/{one}?$select=subject"),
        item("patch", "PATCH", f"{erika_events}/{three}", {"subject": "drei"}),
        item("delete", "DELETE", f"{max_events}/{created['2']['body']['id']}"),
        item("list", "GET", "users/erika@contoso.example/events"),  # no leading slash
    )
    assert changed["get"]["status"] == 200
    assert changed["get"]["body"]["subject"] == "one"
    assert changed["patch"]["status"] == 200 and changed["patch"]["body"]["subject"] == "drei"
    assert_event(changed["patch"]["body"])
    assert changed["delete"]["status"] == 204 and changed["delete"]["body"] is None
    assert changed["list"]["status"] == 200
    assert len(changed["list"]["body"]["value"]) == 1
    assert [e["subject"] for e in setup.control.events(setup.max_id)] == ["one"]
    assert [e["subject"] for e in setup.control.events(setup.erika_id)] == ["drei"]


async def test_per_item_errors(graph: httpx.AsyncClient, setup: Setup) -> None:
    setup.control.add_user(setup.tenant_id, "blocked@contoso.example")
    setup.control.block(setup.client_id, "blocked@contoso.example")
    results = await run_batch(
        graph,
        item("ok", "GET", f"/users/{setup.max_id}/events"),
        item("missing", "GET", f"/users/{setup.max_id}/events/AAkALgAAAAAAHYQDEapmEc2byACqAC"),
        item("blocked", "GET", "/users/blocked@contoso.example/events"),
        item("nobody", "GET", "/users/nobody@contoso.example/events"),
        item("badjson", "POST", f"/users/{setup.max_id}/events", ["not", "an", "object"]),
        item("route", "GET", "/v1.0/users/me/events"),  # the version belongs outside the url
    )
    assert results["ok"]["status"] == 200
    assert (results["missing"]["status"], code(results["missing"])) == (404, "ErrorItemNotFound")
    assert (results["blocked"]["status"], code(results["blocked"])) == (403, "ErrorAccessDenied")
    assert "AccessPolicy" in results["blocked"]["body"]["error"]["message"]
    assert (results["nobody"]["status"], code(results["nobody"])) == (404, "ErrorInvalidUser")
    assert (results["badjson"]["status"], code(results["badjson"])) == (400, "BadRequest")
    assert results["route"]["status"] == 400 and code(results["route"]) == "BadRequest"


async def test_items_need_consent_the_batch_does_not(http: httpx.AsyncClient, setup: Setup) -> None:
    setup.control.set_consent(setup.client_id, False)
    token = (await get_token(http, setup)).json()["access_token"]
    http.headers["Authorization"] = f"Bearer {token}"
    results = await run_batch(http, item("1", "GET", f"/users/{setup.max_id}/events"))
    assert (results["1"]["status"], code(results["1"])) == (403, "ErrorAccessDenied")


@pytest.mark.parametrize(
    ("authorization", "message"),
    [
        (None, "Access token is empty."),
        ("Bearer not-a-token", "CompactToken parsing failed with error code: 80049217"),
    ],
)
async def test_the_batch_needs_a_token(
    http: httpx.AsyncClient, setup: Setup, authorization: str | None, message: str
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    payload = {"requests": [item("1", "GET", f"/users/{setup.max_id}/events")]}
    response = await http.post(BATCH, json=payload, headers=headers)
    assert response.status_code == 401
    assert_graph_error(response.json())
    assert response.json()["error"]["code"] == "InvalidAuthenticationToken"
    assert response.json()["error"]["message"] == message
    assert response.headers["www-authenticate"].startswith("Bearer ")


def _get(item_id: str, **extra: Any) -> dict[str, Any]:
    return item(item_id, "GET", "/users/max@contoso.example/events", **extra)


@pytest.mark.parametrize(
    "payload",
    [
        {"requests": [_get(str(n)) for n in range(21)]},
        {"requests": []},
        {"value": []},
        [],
        {"requests": [_get("a"), _get("A")]},  # ids compare ignoring case
        {"requests": [{"method": "GET", "url": "/users/max@contoso.example/events"}]},
        {"requests": [_get("1") | {"id": 1}]},
        {"requests": [_get("1") | {"method": "FETCH"}]},
        {"requests": [_get("1") | {"url": "https://graph.microsoft.com/v1.0/me"}]},
        {"requests": [_get("1") | {"url": "/$batch"}]},
        {"requests": [_get("1") | {"body": {"subject": "x"}}]},  # no Content-Type
        {"requests": [_get("1") | {"headers": {"Prefer": 5}}]},
        {"requests": [_get("1"), _get("2", dependsOn=["3"])]},  # unknown
        {"requests": [_get("1", dependsOn=["2"]), _get("2", dependsOn=["1"])]},  # a cycle
        {"requests": [_get("1", dependsOn=["1"])]},
        {"requests": [_get("1", dependsOn="0")]},
    ],
)
async def test_malformed_batches(graph: httpx.AsyncClient, setup: Setup, payload: Any) -> None:
    response = await graph.post(BATCH, json=payload)
    assert response.status_code == 400, response.text
    assert_graph_error(response.json())
    assert response.json()["error"]["code"] == "BadRequest"
    assert setup.control.throttle.in_flight(setup.max_id) == 0
    assert setup.control.events(setup.max_id) == []  # nothing of a malformed batch runs


async def test_twenty_is_fine_and_not_json_is_rejected(graph: httpx.AsyncClient) -> None:
    results = await run_batch(graph, *(_get(str(n)) for n in range(20)))
    assert {r["status"] for r in results.values()} == {200}
    response = await graph.post(BATCH, content=b"{", headers=JSON)
    assert response.status_code == 400
    assert_graph_error(response.json())


async def test_depends_on_runs_in_order_and_fails_dependents(
    graph: httpx.AsyncClient, setup: Setup
) -> None:
    event_id = setup.control.outlook_create(setup.max_id, event("start"))
    url = f"/users/{setup.max_id}/events/{event_id}"
    results = await run_batch(
        graph,
        item("1", "PATCH", url, {"subject": "A"}),
        item("2", "GET", url, dependsOn=["1"]),
        item("3", "PATCH", url, {"subject": "B"}, dependsOn=["2"]),
        item("4", "GET", url, dependsOn=["3"]),
        item("5", "DELETE", url, dependsOn=["4"]),
        item("6", "GET", url, dependsOn=["5"]),
        item("7", "GET", url, dependsOn=["6"]),
        item("8", "GET", url, dependsOn=["7", "1"]),
        item("9", "GET", f"/users/{setup.max_id}/events"),  # no dependency: still runs
    )
    assert results["2"]["body"]["subject"] == "A"
    assert results["4"]["body"]["subject"] == "B"
    assert results["5"]["status"] == 204
    assert (results["6"]["status"], code(results["6"])) == (404, "ErrorItemNotFound")
    for dependent in ("7", "8"):  # a 424 fails its own dependents in turn
        assert results[dependent]["status"] == 424
        assert code(results[dependent]) == "FailedDependency"
    assert results["9"]["status"] == 200 and results["9"]["body"]["value"] == []


async def test_a_batch_sends_at_most_four_at_once(graph: httpx.AsyncClient, setup: Setup) -> None:
    gate = setup.control.faults.hold(mailbox="max@contoso.example")
    batch = asyncio.create_task(
        graph.post(BATCH, json={"requests": [_get(str(n)) for n in range(6)]})
    )
    throttle = setup.control.throttle
    assert await asyncio.to_thread(throttle.wait_in_flight, setup.max_id, 4)
    assert throttle.in_flight(setup.max_id) == 4
    outside = await graph.get(f"/v1.0/users/{setup.max_id}/events")
    assert outside.status_code == 429  # the batch's four fill the mailbox
    gate.release()
    response = await batch
    assert [r["status"] for r in response.json()["responses"]] == [200] * 6


async def test_items_are_throttled_per_mailbox(graph: httpx.AsyncClient, setup: Setup) -> None:
    max_gate = setup.control.faults.hold(mailbox="max@contoso.example")
    erika_gate = setup.control.faults.hold(mailbox="erika@contoso.example")
    throttle = setup.control.throttle
    path = f"/v1.0/users/{setup.max_id}/events"
    outside = [asyncio.create_task(graph.get(path)) for _ in range(2)]
    assert await asyncio.to_thread(throttle.wait_in_flight, setup.max_id, 2)
    requests = [_get(f"max-{n}") for n in range(6)]
    requests += [item(f"erika-{n}", "GET", f"/users/{setup.erika_id}/events") for n in range(2)]
    batch = asyncio.create_task(graph.post(BATCH, json={"requests": requests}))
    # Items start in request order, four at a time: once both of Erika's items are in flight,
    # every one of Max's six has been admitted (two) or turned away (four).
    assert await asyncio.to_thread(throttle.wait_in_flight, setup.erika_id, 2)
    assert throttle.in_flight(setup.max_id) == 4
    max_gate.release()
    erika_gate.release()
    response = await batch
    assert response.status_code == 200
    results = response.json()["responses"]
    max_results = [r for r in results if r["id"].startswith("max-")]
    throttled = [r for r in max_results if r["status"] == 429]
    assert len(throttled) == 4 and sum(r["status"] == 200 for r in max_results) == 2
    for result in throttled:
        assert_graph_error(result["body"])
        assert code(result) == "ApplicationThrottled"
        assert result["body"]["error"]["message"] == (
            "Application is over its MailboxConcurrency limit."
        )
    assert [r["status"] for r in results if r["id"].startswith("erika-")] == [200, 200]
    assert [r.status_code for r in await asyncio.gather(*outside)] == [200, 200]


async def test_window_limit_per_item_keeps_retry_after(
    graph: httpx.AsyncClient, setup: Setup
) -> None:
    for _ in range(49):  # the fixture lowers 10,000 per 10 minutes to 50
        assert (await graph.get(f"/v1.0/users/{setup.max_id}/events")).status_code == 200
    results = await run_batch(
        graph,
        item("1", "GET", f"/users/{setup.max_id}/events", dependsOn=[]),
        item("2", "GET", f"/users/{setup.max_id}/events", dependsOn=["1"]),
        item("3", "GET", f"/users/{setup.erika_id}/events", dependsOn=["2"]),
    )
    assert results["1"]["status"] == 200  # the fiftieth request in the window
    assert (results["2"]["status"], code(results["2"])) == (429, "TooManyRequests")
    assert float(results["2"]["headers"]["Retry-After"]) > 0
    assert results["3"]["status"] == 424  # Erika is not throttled, but her item depends on 2


async def test_faults_per_item(graph: httpx.AsyncClient, setup: Setup) -> None:
    faults = setup.control.faults
    faults.add("503", count=1, mailbox="max@contoso.example", retry_after="1.5")
    faults.add("429", count=1, path=f"/users/{setup.erika_id}/events$", retry_after="2.5")
    results = await run_batch(
        graph,
        _get("max-1"),
        _get("max-2"),
        item("erika", "GET", f"/users/{setup.erika_id}/events"),
    )
    max_statuses = sorted(results[k]["status"] for k in ("max-1", "max-2"))
    assert max_statuses == [200, 503]
    failed = next(r for k, r in results.items() if k.startswith("max") and r["status"] == 503)
    assert code(failed) == "serviceNotAvailable" and failed["headers"]["Retry-After"] == "1.5"
    assert (results["erika"]["status"], code(results["erika"])) == (429, "TooManyRequests")
    assert results["erika"]["headers"]["Retry-After"] == "2.5"


async def test_dropped_or_hung_items_take_the_batch_connection(
    graph: httpx.AsyncClient, setup: Setup
) -> None:
    setup.control.faults.add("drop", count=1, mailbox="max@contoso.example")
    with pytest.raises(httpx.TransportError):
        await graph.post(BATCH, json={"requests": [_get("1")]})
    assert (await run_batch(graph, _get("1")))["1"]["status"] == 200
    setup.control.faults.add("timeout", count=1, mailbox="max@contoso.example")
    with pytest.raises(httpx.ReadTimeout):
        await graph.post(BATCH, json={"requests": [_get("1")]}, timeout=0.3)
    assert (await run_batch(graph, _get("1")))["1"]["status"] == 200


@pytest.fixture
async def client(sandbox: SandboxServer, setup: Setup) -> AsyncIterator[GraphClient]:
    settings = Settings(
        graph_url=sandbox.graph_url,
        authority_host=sandbox.authority_host,
        ca_bundle=sandbox.ca_path,
        _env_file=None,
    )
    registry = AuthRegistry(
        authority_host=sandbox.authority_host,
        graph_url=sandbox.graph_url,
        http_client=build_msal_http_client(sandbox.ca_path),
    )
    http = build_http_client(settings)
    credentials = GraphCredentials(
        tenant=setup.tenant_id, client_id=setup.client_id, client_secret=SecretStr(setup.secret)
    )
    try:
        yield GraphClient(
            http,
            registry.auth(credentials),
            graph_url=sandbox.graph_url,
            limiter=MailboxLimiter(),
        )
    finally:
        await http.aclose()
        registry.close()


async def test_graph_client_batch_round_trip(client: GraphClient, setup: Setup) -> None:
    mailbox = "max@contoso.example"
    kept = setup.control.outlook_create(setup.max_id, event("kept"))
    gone = setup.control.outlook_create(setup.max_id, event("gone"))
    events = "/users/max@contoso.example/events"
    requests = [
        BatchRequest(id=f"new-{n}", method="POST", url=events, body=event(f"new {n}", f"tx-{n}"))
        for n in range(22)  # more than one batch
    ]
    requests += [
        BatchRequest(id="Patch", method="PATCH", url=f"{events}/{kept}", body={"subject": "K"}),
        BatchRequest(id="delete", method="DELETE", url=f"{events}/{gone}"),
        BatchRequest(id="missing", method="GET", url=f"{events}/{gone}x"),
    ]
    results = await client.batch(mailbox, requests)
    assert set(results) == {request.id for request in requests}
    for n in range(22):
        result = results[f"new-{n}"]
        assert result.ok and result.status == 201
        assert result.body["subject"] == f"new {n}" and result.body["transactionId"] == f"tx-{n}"
    assert results["Patch"].ok and results["Patch"].body["subject"] == "K"
    assert results["delete"].ok and results["delete"].status == 204
    assert not results["missing"].ok and results["missing"].status == 404
    assert len(setup.control.events(setup.max_id)) == 23
