"""Graph operations: what is sent (URL, headers, body) and what is read back."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from app.graph.errors import ItemNotFound, SyncStateNotFound, Throttled, UnexpectedGraphError
from app.graph.odata import TAG_PROPERTY_ID, event_path, events_path, tag_filter
from app.graph.schemas import BatchRequest, EventWrite
from tests.graph.conftest import GRAPH, graph_error, graph_json

MAILBOX = "anna@contoso.com"
EVENT_ID = "AAkALgAAAAAAHYQDEapmEc2byACqAC-EWg0AfI6F9Ck0OkOCUULqHQAAAAAA3g=="
ETAG = 'W/"ZlnW4RIAV06KYYwlrfNZvQAALfZeRQ=="'
SCHEMA_FILE = Path(__file__).parent.parent / "fixtures" / "graph" / "graph-schemas.json"


def event_json(**extra: Any) -> dict[str, Any]:
    return {
        "@odata.context": f"{GRAPH}/$metadata#users('u1')/events/$entity",
        "@odata.etag": ETAG,
        "id": EVENT_ID,
        "changeKey": "ZlnW4RIAV06KYYwlrfNZvQAALfZeRQ==",
        "iCalUId": "040000008200E00074C5B7101A82E008000000",
        "subject": "Beratung – Müller",
        "start": {"dateTime": "2026-05-06T09:00:00.0000000", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2026-05-06T10:00:00.0000000", "timeZone": "W. Europe Standard Time"},
        "showAs": "busy",
        "type": "singleInstance",
        "transactionId": "7E163156-7762-4BEB-A1C6-729EA81755A7",
        "webLink": "https://outlook.office365.com/owa/?itemid=x",
        **extra,
    }


WRITE: EventWrite = {
    "subject": "Beratung – Müller",
    "body": {"contentType": "text", "content": "Notes"},
    "start": {"dateTime": "2026-05-06T09:00:00", "timeZone": "W. Europe Standard Time"},
    "end": {"dateTime": "2026-05-06T10:00:00", "timeZone": "W. Europe Standard Time"},
    "showAs": "busy",
    "categories": ["bookingtime"],
}


def event_properties() -> set[str]:
    """Property names of Graph's event (with its bases) from graph-schemas.json."""
    schemas = json.loads(SCHEMA_FILE.read_text())["components"]["schemas"]
    names: set[str] = set()
    for schema in (
        "microsoft.graph.entity",
        "microsoft.graph.outlookItem",
        "microsoft.graph.event",
    ):
        for part in schemas[schema].get("allOf", [schemas[schema]]):
            names |= set(part.get("properties", {}))
    return names


async def test_every_call_carries_graph_headers(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "DELETE":
            return graph_json(204, None)
        return graph_json(200, event_json())

    env = await make_env(handler)
    await env.graph.get_event(MAILBOX, EVENT_ID)
    await env.graph.update_event(MAILBOX, EVENT_ID, {"subject": "x"})
    await env.graph.delete_event(MAILBOX, EVENT_ID)
    ids = [r.headers["client-request-id"] for r in env.sent]
    assert len(set(ids)) == 3
    for request in env.sent:
        prefer = request.headers.get_list("Prefer")
        assert 'IdType="ImmutableId"' in prefer
    assert 'outlook.timezone="W. Europe Standard Time"' in env.sent[0].headers.get_list("Prefer")
    assert env.sent[2].headers.get_list("Prefer") == ['IdType="ImmutableId"']


async def test_result_carries_request_ids(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_json(
            200,
            event_json(),
            request_id="94fb3b52-0000-4000-8000-000000000001",
            client_request_id=request.headers["client-request-id"],
        )

    env = await make_env(handler)
    result = await env.graph.get_event(MAILBOX, EVENT_ID)
    assert result.request_id == "94fb3b52-0000-4000-8000-000000000001"
    assert result.client_request_id == env.sent[0].headers["client-request-id"]
    event = result.value
    assert (event.id, event.change_key, event.etag) == (EVENT_ID, event.change_key, ETAG)
    assert event.ical_uid == "040000008200E00074C5B7101A82E008000000"
    assert event.model_extra is not None and "webLink" in event.model_extra  # unknown fields kept


async def test_create_carries_transaction_id_and_tag(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_json(201, event_json())

    env = await make_env(handler)
    result = await env.graph.create_event(
        MAILBOX, WRITE, transaction_id="7E163156-7762-4BEB-A1C6-729EA81755A7", tag="c1:a42:e7"
    )
    request = env.sent[0]
    assert request.method == "POST"
    assert str(request.url) == f"{GRAPH}/users/anna@contoso.com/events"
    body = json.loads(request.content)
    assert body["transactionId"] == "7E163156-7762-4BEB-A1C6-729EA81755A7"
    assert body["singleValueExtendedProperties"] == [{"id": TAG_PROPERTY_ID, "value": "c1:a42:e7"}]
    assert body["subject"] == WRITE["subject"]
    assert set(body) <= event_properties()  # every field we send exists on Graph's event
    assert request.headers["Content-Type"] == "application/json"
    assert result.status == 201


async def test_find_by_tag_builds_the_exact_filter(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_json(200, {"value": [event_json()]})

    env = await make_env(handler)
    found = await env.graph.find_events_by_tag(MAILBOX, "o'brien:a1")
    query = parse_qs(urlsplit(str(env.sent[0].url)).query)
    assert query["$filter"] == [
        "singleValueExtendedProperties/Any(ep: ep/id eq "
        "'String {19bb3d11-6575-4cf5-900e-b877ada95897} Name calbridgeAppointmentKey' "
        "and ep/value eq 'o''brien:a1')"
    ]
    assert query["$expand"] == [f"singleValueExtendedProperties($filter=id eq '{TAG_PROPERTY_ID}')"]
    assert tag_filter("x").startswith("singleValueExtendedProperties/Any(ep: ")
    assert [e.id for e in found.value] == [EVENT_ID]


async def test_update_patches_given_fields_with_if_match(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_json(200, event_json(subject="Neu"))

    env = await make_env(handler)
    await env.graph.update_event(MAILBOX, EVENT_ID, {"subject": "Neu"}, if_match=ETAG)
    await env.graph.update_event(MAILBOX, EVENT_ID, {"showAs": "free"}, if_match="ZlnW")
    first, second = env.sent
    assert first.method == "PATCH"
    assert first.url.path == f"/v1.0/users/anna@contoso.com/events/{EVENT_ID}"
    assert json.loads(first.content) == {"subject": "Neu"}
    assert first.headers["If-Match"] == ETAG
    assert second.headers["If-Match"] == 'W/"ZlnW"'
    assert "If-Match" not in (await _plain_update(make_env)).headers


async def _plain_update(make_env: Any) -> httpx.Request:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_json(200, event_json())

    env = await make_env(handler)
    await env.graph.update_event(MAILBOX, EVENT_ID, {"subject": "x"})
    return env.sent[0]


async def test_delete_404_raises_item_not_found(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(
            404, "ErrorItemNotFound", "The specified object was not found in the store."
        )

    env = await make_env(handler)
    with pytest.raises(ItemNotFound):
        await env.graph.delete_event(MAILBOX, EVENT_ID)


# --- delta ---------------------------------------------------------------------------------

START = datetime(2026, 5, 4, tzinfo=UTC)
END = START + timedelta(days=90)
DELTA = f"{GRAPH}/users/anna@contoso.com/calendarView/delta"


def delta_handler(pages: dict[str, dict[str, Any]]) -> Any:
    async def handler(request: httpx.Request) -> httpx.Response:
        query = parse_qs(urlsplit(str(request.url)).query)
        token = (query.get("$skiptoken") or query.get("$deltatoken") or ["first"])[0]
        if token == "expired":
            return graph_error(
                410,
                "syncStateNotFound",
                "The sync state is not found.",
                Location=f"{DELTA}?$deltatoken=",
            )
        return graph_json(200, pages[token])

    return handler


PAGES = {
    "first": {
        "@odata.context": f"{GRAPH}/$metadata#Collection(event)",
        "@odata.nextLink": f"{DELTA}?$skiptoken=p2",
        "value": [{"@odata.type": "#microsoft.graph.event", **event_json()}],
    },
    "p2": {
        "@odata.nextLink": f"{DELTA}?$skiptoken=p3",
        "value": [
            {
                "@odata.type": "#microsoft.graph.event",
                "id": "AAMkGone",
                "@removed": {"reason": "deleted"},
            },
            {"@odata.type": "#microsoft.graph.event", **event_json(id="AAMk2")},
        ],
    },
    "p3": {
        "@odata.deltaLink": f"{DELTA}?$deltatoken=d1",
        "value": [{"id": "AAMkOut", "@removed": {"reason": "changed"}}],
    },
    "d1": {"@odata.deltaLink": f"{DELTA}?$deltatoken=d2", "value": []},
}


async def test_delta_pages_removed_and_delta_link(make_env: Any) -> None:
    env = await make_env(delta_handler(PAGES))
    result = await env.graph.delta_sync(MAILBOX, start=START, end=END, page_size=50)
    assert [e.id for e in result.events] == [EVENT_ID, "AAMk2"]
    assert [(r.id, r.reason) for r in result.removed] == [
        ("AAMkGone", "deleted"),
        ("AAMkOut", "changed"),
    ]
    assert result.delta_link == f"{DELTA}?$deltatoken=d1"
    assert len(result.request_ids) == 3
    first = env.sent[0]
    assert parse_qs(first.url.query.decode()) == {
        "startDateTime": ["2026-05-04T00:00:00Z"],
        "endDateTime": ["2026-08-02T00:00:00Z"],
    }
    assert str(env.sent[1].url) == f"{DELTA}?$skiptoken=p2"
    for request in env.sent:
        prefer = request.headers.get_list("Prefer")
        assert {'IdType="ImmutableId"', "odata.maxpagesize=50"} <= set(prefer)
        assert 'outlook.timezone="W. Europe Standard Time"' in prefer

    again = await env.graph.delta_sync(MAILBOX, link=result.delta_link)
    assert again.delta_link == f"{DELTA}?$deltatoken=d2"


async def test_delta_as_async_iterator(make_env: Any) -> None:
    env = await make_env(delta_handler(PAGES))
    pages = [page async for page in env.graph.delta_start(MAILBOX, START, END)]
    assert [p.next_link is not None for p in pages] == [True, True, False]
    assert pages[-1].delta_link == f"{DELTA}?$deltatoken=d1"
    assert [r.id for r in pages[1].removed] == ["AAMkGone"]


async def test_delta_410_is_sync_state_not_found(make_env: Any) -> None:
    env = await make_env(delta_handler(PAGES))
    with pytest.raises(SyncStateNotFound) as caught:
        await env.graph.delta_sync(MAILBOX, link=f"{DELTA}?$deltatoken=expired")
    assert caught.value.status == 410
    assert caught.value.permanent


async def test_links_to_another_host_are_refused(make_env: Any) -> None:
    env = await make_env(delta_handler(PAGES))
    for link in (
        "https://evil.example/v1.0/users/a/calendarView/delta?$deltatoken=x",
        "http://graph.microsoft.com/v1.0/users/a/calendarView/delta?$deltatoken=x",
        "https://graph.microsoft.com.evil.example/v1.0/x",
    ):
        with pytest.raises(UnexpectedGraphError) as caught:
            await env.graph.delta_sync(MAILBOX, link=link)
        assert caught.value.permanent
    assert env.sent == []


def test_delta_window_needs_aware_datetimes() -> None:
    from app.graph.odata import graph_time

    with pytest.raises(ValueError):
        graph_time(datetime(2026, 5, 4))


# --- subscriptions -------------------------------------------------------------------------

SUB = {
    "@odata.context": f"{GRAPH}/$metadata#subscriptions/$entity",
    "id": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
    "resource": "users/anna@contoso.com/events",
    "applicationId": "24d3b144-21ae-4080-943f-7067b395b913",
    "changeType": "created,updated,deleted",
    "clientState": "secretClientValue",
    "notificationUrl": "https://calbridge.example/webhooks/graph/notifications",
    "lifecycleNotificationUrl": "https://calbridge.example/webhooks/graph/lifecycle",
    "expirationDateTime": "2026-05-08T18:23:45.9356913Z",
    "creatorId": "8ee44408-0679-472c-bc2a-692812af3437",
    "latestSupportedTlsVersion": "v1_2",
    "notificationContentType": "application/json",
}


async def test_subscription_crud(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if request.method == "POST" and path.endswith("/reauthorize"):
            return graph_json(204, None)
        if request.method == "POST":
            return graph_json(201, SUB)
        if request.method == "DELETE":
            return graph_json(204, None)
        if path == "/v1.0/subscriptions":
            return graph_json(200, {"value": [SUB]})
        return graph_json(200, SUB)

    env = await make_env(handler)
    expires = datetime(2026, 5, 8, 18, 0, tzinfo=UTC)
    created = await env.graph.create_subscription(
        resource="users/anna@contoso.com/events",
        change_type="created,updated,deleted",
        notification_url=SUB["notificationUrl"],
        lifecycle_notification_url=SUB["lifecycleNotificationUrl"],
        client_state="secretClientValue",
        expiration=expires,
    )
    assert created.status == 201 and created.value.id == SUB["id"]
    assert json.loads(env.sent[0].content) == {
        "changeType": "created,updated,deleted",
        "notificationUrl": SUB["notificationUrl"],
        "lifecycleNotificationUrl": SUB["lifecycleNotificationUrl"],
        "resource": "users/anna@contoso.com/events",
        "expirationDateTime": "2026-05-08T18:00:00Z",
        "clientState": "secretClientValue",
    }
    sub_id = SUB["id"]
    assert (await env.graph.get_subscription(sub_id)).value.client_state == "secretClientValue"
    assert [s.id for s in (await env.graph.list_subscriptions()).value] == [sub_id]
    await env.graph.renew_subscription(sub_id, expires + timedelta(days=1))
    assert json.loads(env.sent[3].content) == {"expirationDateTime": "2026-05-09T18:00:00Z"}
    assert (await env.graph.reauthorize_subscription(sub_id)).status == 204
    assert (await env.graph.delete_subscription(sub_id)).status == 204
    assert [(r.method, r.url.path) for r in env.sent] == [
        ("POST", "/v1.0/subscriptions"),
        ("GET", f"/v1.0/subscriptions/{sub_id}"),
        ("GET", "/v1.0/subscriptions"),
        ("PATCH", f"/v1.0/subscriptions/{sub_id}"),
        ("POST", f"/v1.0/subscriptions/{sub_id}/reauthorize"),
        ("DELETE", f"/v1.0/subscriptions/{sub_id}"),
    ]
    assert all('IdType="ImmutableId"' in r.headers.get_list("Prefer") for r in env.sent)


async def test_renew_of_a_gone_subscription(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(404, "ResourceNotFound", "The object was not found.")

    env = await make_env(handler)
    with pytest.raises(ItemNotFound):
        await env.graph.renew_subscription("gone", datetime(2026, 5, 8, tzinfo=UTC))


# --- $batch --------------------------------------------------------------------------------


NOT_FOUND = {
    "status": 404,
    "headers": {"Content-Type": "application/json"},
    "body": {
        "error": {
            "code": "ErrorItemNotFound",
            "message": "The specified object was not found in the store.",
        }
    },
}
THROTTLED = {
    "status": 429,
    "headers": {"Retry-After": "4.5"},
    "body": {
        "error": {
            "code": "ApplicationThrottled",
            "message": "Application is over its MailboxConcurrency limit.",
        }
    },
}


async def test_batch_splits_and_matches_by_id(make_env: Any) -> None:
    batches: list[list[dict[str, Any]]] = []

    async def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1.0/$batch"
        items = json.loads(request.content)["requests"]
        batches.append(items)
        responses = []
        for item in reversed(items):  # Graph answers in any order
            n = int(item["id"].removeprefix("r")) if item["id"] != "new" else -1
            if n == 3:
                responses.append({"id": item["id"], **NOT_FOUND})
            elif n == 22:  # ids match ignoring case
                responses.append({"id": item["id"].upper(), **THROTTLED})
            else:
                responses.append({"id": item["id"], "status": 204, "headers": {}, "body": None})
        return graph_json(200, {"responses": responses})

    env = await make_env(handler)
    requests = [
        BatchRequest(id=f"r{n}", method="DELETE", url=event_path(MAILBOX, f"AAMk{n}"))
        for n in range(25)
    ]
    requests.append(
        BatchRequest(id="new", method="POST", url=events_path(MAILBOX), body={"subject": "x"})
    )
    results = await env.graph.batch(MAILBOX, requests)
    assert [len(b) for b in batches] == [20, 6]
    assert set(results) == {r.id for r in requests}
    assert isinstance(results["r3"].error, ItemNotFound)
    throttled = results["r22"].error
    assert isinstance(throttled, Throttled) and throttled.retry_after == 4.5
    assert env.graph.mailbox_throttled_until(MAILBOX) == env.clock.now + timedelta(seconds=4.5)
    assert results["new"].ok and results["r0"].status == 204
    post = next(item for item in batches[1] if item["id"] == "new")
    assert post["url"] == "/users/anna@contoso.com/events"
    assert post["headers"]["Content-Type"] == "application/json"
    assert post["headers"]["Prefer"] == (
        'IdType="ImmutableId", outlook.timezone="W. Europe Standard Time"'
    )
    delete = batches[0][0]
    assert delete["headers"] == {"Prefer": 'IdType="ImmutableId"'} and "body" not in delete


async def test_batch_missing_response_and_duplicate_ids(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_json(200, {"responses": []})

    env = await make_env(handler)
    results = await env.graph.batch(
        MAILBOX, [BatchRequest(id="a", method="DELETE", url=event_path(MAILBOX, "x"))]
    )
    assert results["a"].error is not None and results["a"].error.retryable
    with pytest.raises(ValueError):
        await env.graph.batch(
            MAILBOX,
            [
                BatchRequest(id="a", method="DELETE", url="/x"),
                BatchRequest(id="A", method="DELETE", url="/y"),
            ],
        )
