"""Subscriptions over HTTPS against a real receiver: handshake, limits, delivery, retries and
lifecycle notifications, every body checked against Graph's schemas."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import trustme

from tests.sandbox.conftest import Setup
from tests.sandbox.receiver import Receiver, serve
from tests.sandbox.schema import assert_graph_error, assert_valid

SUBSCRIPTION = "microsoft.graph.subscription"
EVENT = {
    "subject": "Standup",
    "start": {"dateTime": "2030-01-07T09:00:00", "timeZone": "UTC"},
    "end": {"dateTime": "2030-01-07T09:15:00", "timeZone": "UTC"},
}


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    yield from serve(Receiver(), None, tmp_path)


@pytest.fixture
async def client(graph: httpx.AsyncClient, setup: Setup) -> AsyncIterator[httpx.AsyncClient]:
    # Short backoff so retry tests stay fast; Graph's real schedule spans hours.
    setup.control.delivery_config.retry_delays = (0.01, 0.02, 0.04)
    yield graph


def body_for(receiver: Receiver, user: str, **extra: Any) -> dict[str, Any]:
    return {
        "changeType": "created,updated,deleted",
        "notificationUrl": f"{receiver.url}/hook",
        "lifecycleNotificationUrl": f"{receiver.url}/lifecycle",
        "resource": f"users/{user}/events",
        # Three days: within Graph's 10,080 minutes on any sandbox clock a test has moved on.
        "expirationDateTime": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        "clientState": "secret-state",
        **extra,
    }


async def subscribe(
    client: httpx.AsyncClient, receiver: Receiver, user: str, **extra: Any
) -> dict[str, Any]:
    response = await client.post("/v1.0/subscriptions", json=body_for(receiver, user, **extra))
    assert response.status_code == 201, response.text
    sub: dict[str, Any] = response.json()
    assert_valid(sub, SUBSCRIPTION)
    return sub


def error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    assert_graph_error(response.json())
    assert response.json()["error"]["code"] == code
    return str(response.json()["error"]["message"])


async def wait(receiver: Receiver, predicate: Callable[[Receiver], bool]) -> None:
    await asyncio.to_thread(receiver.wait, predicate)


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value)


async def test_create_get_list_delete(
    client: httpx.AsyncClient, setup: Setup, receiver: Receiver
) -> None:
    sub = await subscribe(client, receiver, setup.max_id, resource=f"/users/{setup.max_id}/events")
    assert sub["changeType"] == "created,updated,deleted"
    assert sub["applicationId"] == setup.client_id and sub["clientState"] == "secret-state"
    assert sub["latestSupportedTlsVersion"] == "v1_2"
    assert sub["@odata.context"].endswith("/v1.0/$metadata#subscriptions/$entity")
    # Both URLs were validated: token URL-decoded by the receiver, sent as text/plain.
    handshakes = [r for r in receiver.requests if "validationToken" in r.query]
    assert [r.path for r in handshakes] == ["/hook", "/lifecycle"]
    assert handshakes[0].headers["content-type"].startswith("text/plain")
    assert handshakes[0].query["validationToken"][0].startswith("Validation: ")

    got = await client.get(f"/v1.0/subscriptions/{sub['id']}")
    assert got.status_code == 200 and got.json()["id"] == sub["id"]
    assert_valid(got.json(), SUBSCRIPTION)
    listed = await client.get("/v1.0/subscriptions")
    assert [s["id"] for s in listed.json()["value"]] == [sub["id"]]
    for item in listed.json()["value"]:
        assert_valid(item, SUBSCRIPTION)

    assert (await client.delete(f"/v1.0/subscriptions/{sub['id']}")).status_code == 204
    error(await client.get(f"/v1.0/subscriptions/{sub['id']}"), 404, "ResourceNotFound")
    error(await client.delete(f"/v1.0/subscriptions/{sub['id']}"), 404, "ResourceNotFound")
    assert setup.control.subscriptions() == []


@pytest.mark.parametrize("mode", ["500", "wrong", "encoded"])
async def test_failed_handshake_is_400(
    client: httpx.AsyncClient, setup: Setup, receiver: Receiver, mode: str
) -> None:
    receiver.validation = mode
    response = await client.post("/v1.0/subscriptions", json=body_for(receiver, setup.max_id))
    message = error(response, 400, "ValidationError")
    assert message.startswith("Subscription validation request failed.")
    assert setup.control.subscriptions() == []


async def test_failed_lifecycle_handshake_is_400(
    client: httpx.AsyncClient, setup: Setup, receiver: Receiver
) -> None:
    body = body_for(receiver, setup.max_id, lifecycleNotificationUrl="http://127.0.0.1:9/gone")
    error(await client.post("/v1.0/subscriptions", json=body), 400, "ValidationError")
    assert setup.control.subscriptions() == []


async def test_refusals(client: httpx.AsyncClient, setup: Setup, receiver: Receiver) -> None:
    async def create(**extra: Any) -> httpx.Response:
        return await client.post(
            "/v1.0/subscriptions", json=body_for(receiver, setup.max_id, **extra)
        )

    error(await create(resource="me/events"), 400, "BadRequest")
    error(await create(notificationUrl="http://example.com/hook"), 400, "InvalidRequest")
    error(await create(changeType="created,moved"), 400, "InvalidRequest")
    error(await create(clientState="x" * 129), 400, "InvalidRequest")
    error(await create(resource="users/nobody@contoso.example/events"), 404, "ErrorInvalidUser")
    setup.control.block(setup.client_id, setup.max_id)
    error(await create(), 403, "ErrorAccessDenied")
    setup.control.block(setup.client_id, setup.max_id, blocked=False)
    await subscribe(client, receiver, setup.max_id)
    # §1.1: the same changeType and resource again is a conflict, whatever the URL.
    message = error(await create(notificationUrl=f"{receiver.url}/other"), 409, "Conflict")
    assert message.endswith("already exists for the requested combination")
    await subscribe(client, receiver, setup.max_id, changeType="deleted")
    assert len(setup.control.subscriptions()) == 2


async def test_expiration_is_raised_to_45_minutes_and_refused_past_the_maximum(
    client: httpx.AsyncClient, setup: Setup, receiver: Receiver
) -> None:
    now = setup.control.clock.freeze()
    soon = (now + timedelta(minutes=10)).isoformat()
    sub = await subscribe(client, receiver, setup.max_id, expirationDateTime=soon)
    assert parse_time(sub["expirationDateTime"]) == now + timedelta(minutes=45)
    path = f"/v1.0/subscriptions/{sub['id']}"
    # Past 10,080 minutes Graph refuses, on renew and on create, and keeps what it had.
    far = (now + timedelta(days=30)).isoformat()
    message = error(
        await client.patch(path, json={"expirationDateTime": far}), 400, "ExtensionError"
    )
    assert message == "Subscription expiration can only be 10080 minutes in the future."
    (kept,) = setup.control.subscriptions()
    assert kept.expires_at == now + timedelta(minutes=45)
    created = await client.post(
        "/v1.0/subscriptions",
        json=body_for(receiver, setup.max_id, changeType="deleted", expirationDateTime=far),
    )
    error(created, 400, "ExtensionError")
    assert len(setup.control.subscriptions()) == 1
    longest = (now + timedelta(minutes=10_080)).isoformat()
    renewed = await client.patch(path, json={"expirationDateTime": longest})
    assert renewed.status_code == 200, renewed.text
    assert_valid(renewed.json(), SUBSCRIPTION)
    assert parse_time(renewed.json()["expirationDateTime"]) == now + timedelta(minutes=10_080)
    error(await client.patch(path, json={}), 400, "InvalidRequest")
    lifecycle = {"lifecycleNotificationUrl": f"{receiver.url}/x"}
    error(await client.patch(path, json=lifecycle), 400, "InvalidRequest")
    assert (await client.post(f"{path}/reauthorize")).status_code == 204
    error(await client.post("/v1.0/subscriptions/0000/reauthorize"), 404, "ResourceNotFound")


async def test_expired_subscription_is_gone(
    client: httpx.AsyncClient, setup: Setup, receiver: Receiver
) -> None:
    control = setup.control
    soon = control.clock.now().isoformat()
    sub = await subscribe(client, receiver, setup.max_id, expirationDateTime=soon)
    other = await subscribe(client, receiver, setup.erika_id)
    control.clock.advance(timedelta(minutes=46))
    error(await client.get(f"/v1.0/subscriptions/{sub['id']}"), 404, "ResourceNotFound")
    renew = {"expirationDateTime": "2099-01-01T00:00:00Z"}
    error(
        await client.patch(f"/v1.0/subscriptions/{sub['id']}", json=renew), 404, "ResourceNotFound"
    )
    control.outlook_create(setup.max_id, EVENT)
    control.outlook_create(setup.erika_id, EVENT)
    await wait(receiver, lambda r: len(r.items()) >= 2)
    assert {item["subscriptionId"] for item in receiver.items()} == {other["id"]}
    control.expire_subscription(other["id"])
    assert control.subscriptions() == []


async def test_graph_changes_are_notified(
    client: httpx.AsyncClient, setup: Setup, receiver: Receiver
) -> None:
    sub = await subscribe(client, receiver, setup.max_id)
    created = await client.post(f"/v1.0/users/{setup.max_id}/events", json=EVENT)
    event = created.json()
    await wait(receiver, lambda r: len(r.items()) >= 2)
    first = receiver.posts()[0]
    assert first.headers["content-type"].startswith("application/json")
    items = receiver.items()
    assert [i["changeType"] for i in items] == ["created", "updated"]
    for item in items:
        assert item["subscriptionId"] == sub["id"] and item["tenantId"] == setup.tenant_id
        assert item["clientState"] == "secret-state"
        assert item["subscriptionExpirationDateTime"] == sub["expirationDateTime"]
        assert item["resource"] == f"Users/{setup.max_id}/Events/{event['id']}"
        assert item["resourceData"] == {
            "@odata.type": "#Microsoft.Graph.Event",
            "@odata.id": item["resource"],
            "@odata.etag": event["@odata.etag"],
            "id": event["id"],
        }
    patched = await client.patch(
        f"/v1.0/users/{setup.max_id}/events/{event['id']}", json={"subject": "Later"}
    )
    await wait(receiver, lambda r: len(r.items()) >= 3)
    assert receiver.items()[2]["changeType"] == "updated"
    assert receiver.items()[2]["resourceData"]["@odata.etag"] == patched.json()["@odata.etag"]
    await client.delete(f"/v1.0/users/{setup.max_id}/events/{event['id']}")
    await wait(receiver, lambda r: len(r.items()) >= 4)
    deleted = receiver.items()[3]
    assert deleted["changeType"] == "deleted" and deleted["resourceData"]["id"] == event["id"]
    # The sandbox's own record of the same deliveries.
    log = setup.control.wait_deliveries(3)
    assert all(d.ok and d.url == f"{receiver.url}/hook" for d in log)


async def test_outlook_changes_filtered_by_change_type(
    client: httpx.AsyncClient, setup: Setup, receiver: Receiver
) -> None:
    control = setup.control
    client.headers["Prefer"] = 'IdType="ImmutableId"'
    await subscribe(client, receiver, setup.max_id, changeType="updated", clientState=None)
    event_id = control.outlook_create(setup.max_id, EVENT)
    await wait(receiver, lambda r: len(r.items()) >= 1)
    control.outlook_edit(setup.max_id, event_id, {"subject": "Moved"})
    await wait(receiver, lambda r: len(r.items()) >= 2)
    control.outlook_delete(setup.max_id, event_id)
    control.outlook_create(setup.max_id, EVENT)  # its `updated` proves the delete was skipped
    await wait(receiver, lambda r: len(r.items()) >= 3)
    items = receiver.items()
    assert [i["changeType"] for i in items] == ["updated"] * 3
    assert items[0]["resourceData"]["id"] == event_id  # immutable ids, as the Prefer asked
    assert items[0]["clientState"] is None


async def test_changes_close_together_are_batched(
    client: httpx.AsyncClient, setup: Setup, receiver: Receiver
) -> None:
    control = setup.control
    control.delivery_config.batch_window = 0.3
    await subscribe(client, receiver, setup.max_id, changeType="deleted")
    await subscribe(client, receiver, setup.erika_id, changeType="deleted")
    ids = [control.outlook_create(setup.max_id, EVENT) for _ in range(3)]
    erika_event = control.outlook_create(setup.erika_id, EVENT)
    for event_id in ids:
        control.outlook_delete(setup.max_id, event_id)
    control.outlook_delete(setup.erika_id, erika_event)
    await wait(receiver, lambda r: len(r.items()) >= 4)
    assert len(receiver.posts()) == 1  # two subscriptions, one endpoint, one POST
    assert len({i["subscriptionId"] for i in receiver.items()}) == 2


async def test_non_2xx_is_retried_then_dropped(
    client: httpx.AsyncClient, setup: Setup, receiver: Receiver
) -> None:
    control = setup.control
    await subscribe(client, receiver, setup.max_id, changeType="deleted")
    receiver.statuses = [500, 503]
    first = control.outlook_create(setup.max_id, EVENT)
    control.outlook_delete(setup.max_id, first)
    attempts = await asyncio.to_thread(control.wait_deliveries, 3, final=False)
    assert [(d.attempt, d.status, d.final) for d in attempts] == [
        (1, 500, False),
        (2, 503, False),
        (3, 202, True),
    ]
    assert len(receiver.posts()) == 3 and receiver.posts()[0].body == receiver.posts()[2].body
    control.clear_deliveries()
    receiver.statuses = [500] * 4
    second = control.outlook_create(setup.max_id, EVENT)
    control.outlook_delete(setup.max_id, second)
    attempts = await asyncio.to_thread(control.wait_deliveries, 1)
    assert attempts[0].attempt == 4 and attempts[0].status == 500 and not attempts[0].ok


async def test_pause_holds_deliveries(
    client: httpx.AsyncClient, setup: Setup, receiver: Receiver
) -> None:
    control = setup.control
    await subscribe(client, receiver, setup.max_id, changeType="created")
    control.pause_delivery()
    control.outlook_create(setup.max_id, EVENT)
    with pytest.raises(TimeoutError):
        await asyncio.to_thread(control.wait_deliveries, 1, timeout=0.3)
    control.resume_delivery()
    await asyncio.to_thread(control.wait_deliveries, 1)
    assert receiver.items()[0]["changeType"] == "created"


async def test_lifecycle_notifications(
    client: httpx.AsyncClient, setup: Setup, receiver: Receiver
) -> None:
    control = setup.control
    sub = await subscribe(client, receiver, setup.max_id, changeType="created")
    control.fire_lifecycle(sub["id"], "missed")
    control.fire_lifecycle(sub["id"], "reauthorizationRequired", suspend=True)
    await wait(receiver, lambda r: len(r.items("/lifecycle")) >= 2)
    control.outlook_create(setup.max_id, EVENT)  # lost: the subscription waits for reauthorize
    assert (await client.post(f"/v1.0/subscriptions/{sub['id']}/reauthorize")).status_code == 204
    control.outlook_create(setup.max_id, EVENT)
    await wait(receiver, lambda r: len(r.items()) >= 1)
    control.fire_lifecycle(sub["id"], "subscriptionRemoved")
    await wait(receiver, lambda r: len(r.items("/lifecycle")) >= 3)
    error(await client.get(f"/v1.0/subscriptions/{sub['id']}"), 404, "ResourceNotFound")

    events = receiver.items("/lifecycle")
    assert sorted(i["lifecycleEvent"] for i in events) == [
        "missed",
        "reauthorizationRequired",
        "subscriptionRemoved",
    ]
    for item in events:
        assert item["subscriptionId"] == sub["id"] and item["tenantId"] == setup.tenant_id
        assert item["clientState"] == "secret-state" and "changeType" not in item
    assert len(receiver.items()) == 1  # the change during the pause was never sent


async def test_https_receiver(client: httpx.AsyncClient, setup: Setup, tmp_path: Path) -> None:
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    setup.control.delivery_config.ca_file = str(tmp_path / "ca.pem")
    for receiver in serve(Receiver(), ca.issue_cert("127.0.0.1"), tmp_path):
        assert receiver.url.startswith("https://")
        await subscribe(client, receiver, setup.max_id, changeType="created")
        setup.control.outlook_create(setup.max_id, EVENT)
        await wait(receiver, lambda r: len(r.items()) >= 1)


async def test_untrusted_https_receiver_fails_handshake(
    client: httpx.AsyncClient, setup: Setup, tmp_path: Path
) -> None:
    for receiver in serve(Receiver(), trustme.CA().issue_cert("127.0.0.1"), tmp_path):
        response = await client.post("/v1.0/subscriptions", json=body_for(receiver, setup.max_id))
        error(response, 400, "ValidationError")


async def test_control_over_http(
    client: httpx.AsyncClient, setup: Setup, receiver: Receiver
) -> None:
    sub = await subscribe(client, receiver, setup.max_id)
    listed = await client.get("/_sandbox/subscriptions")
    assert [s["id"] for s in listed.json()] == [sub["id"]]
    fired = await client.post(
        f"/_sandbox/subscriptions/{sub['id']}/lifecycle", json={"event": "missed"}
    )
    assert fired.status_code == 202
    await wait(receiver, lambda r: len(r.items("/lifecycle")) >= 1)
    await asyncio.to_thread(setup.control.wait_deliveries, 1, kind="lifecycle")
    log = (await client.get("/_sandbox/deliveries")).json()
    assert [d["kind"] for d in log] == ["validation", "validation", "lifecycle"]
    assert (await client.post(f"/_sandbox/subscriptions/{sub['id']}/expire")).status_code == 204
    assert (await client.get("/_sandbox/subscriptions")).json() == []
