"""Users and events over HTTPS, every body checked against Graph's schemas."""

from __future__ import annotations

import re
from urllib.parse import quote

import httpx

from tests.sandbox.conftest import TAG_ID, Setup
from tests.sandbox.schema import assert_event, assert_graph_error, assert_valid

EVENT = {
    "subject": "Let's go for lunch",
    "body": {"contentType": "HTML", "content": "Does noon work for you?"},
    "start": {"dateTime": "2017-04-15T12:00:00", "timeZone": "Pacific Standard Time"},
    "end": {"dateTime": "2017-04-15T14:00:00", "timeZone": "Pacific Standard Time"},
    "location": {"displayName": "Harry's Bar"},
    "attendees": [
        {
            "emailAddress": {"address": "samanthab@contoso.com", "name": "Samantha"},
            "type": "required",
        }
    ],
    "transactionId": "7E163156-7762-4BEB-A1C6-729EA81755A7",
    "singleValueExtendedProperties": [{"id": TAG_ID, "value": "Booking-42"}],
}


def _tag_filter(prop_id: str, value: str) -> str:
    return f"singleValueExtendedProperties/Any(ep: ep/id eq '{prop_id}' and ep/value eq '{value}')"


def _error(response: httpx.Response, status: int, code: str) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert_graph_error(body)
    assert body["error"]["code"] == code
    return str(body["error"]["message"])


async def test_users(graph: httpx.AsyncClient, setup: Setup) -> None:
    user = await graph.get("/v1.0/users/MAX@contoso.example")
    assert user.status_code == 200 and user.json()["id"] == setup.max_id
    message = _error(
        await graph.get("/v1.0/users/nobody@contoso.example"), 404, "Request_ResourceNotFound"
    )
    assert "nobody@contoso.example" in message
    message = _error(
        await graph.get("/v1.0/users/nobody@contoso.example/events"), 404, "ErrorInvalidUser"
    )
    assert message == "The requested user 'nobody@contoso.example' is invalid."
    setup.control.add_user(setup.tenant_id, "guest@contoso.example", mailbox=False)
    _error(
        await graph.get("/v1.0/users/guest@contoso.example/events"),
        404,
        "MailboxNotEnabledForRESTAPI",
    )


async def test_create_get_patch_delete(graph: httpx.AsyncClient, setup: Setup) -> None:
    prefer = {"Prefer": 'outlook.timezone="Pacific Standard Time", IdType="ImmutableId"'}
    created = await graph.post(f"/v1.0/users/{setup.max_id}/events", json=EVENT, headers=prefer)
    assert created.status_code == 201, created.text
    event = created.json()
    assert_event(event)
    assert event["id"].startswith("AAkALg")
    assert event["@odata.etag"] == f'W/"{event["changeKey"]}"'
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z", event["createdDateTime"])
    assert event["start"] == {
        "dateTime": "2017-04-15T12:00:00.0000000",
        "timeZone": "Pacific Standard Time",
    }
    assert event["body"]["contentType"] == "html"
    assert event["body"]["content"].startswith("<html>")
    assert event["transactionId"] == EVENT["transactionId"]
    assert event["showAs"] == "busy" and event["reminderMinutesBeforeStart"] == 15
    assert event["attendees"][0]["status"] == {"response": "none", "time": "0001-01-01T00:00:00Z"}
    assert quote(event["id"], safe="") in event["webLink"]
    assert "singleValueExtendedProperties" not in event
    assert (
        created.headers["preference-applied"]
        == 'outlook.timezone="Pacific Standard Time", IdType="ImmutableId"'
    )
    assert created.headers["content-type"].startswith("application/json;odata.metadata=minimal")

    again = await graph.post(f"/v1.0/users/{setup.max_id}/events", json=EVENT, headers=prefer)
    assert again.status_code == 201 and again.json()["id"] == event["id"]
    assert len(setup.control.events(setup.max_id)) == 1

    utc = (await graph.get(f"/v1.0/users/{setup.max_id}/events/{event['id']}")).json()
    assert_event(utc)
    assert utc["start"] == {"dateTime": "2017-04-15T19:00:00.0000000", "timeZone": "UTC"}
    iana = await graph.get(
        f"/v1.0/users/{setup.max_id}/events/{event['id']}",
        headers={"Prefer": 'outlook.timezone="Europe/Berlin"'},
    )
    assert iana.json()["start"]["dateTime"] == "2017-04-15T21:00:00.0000000"
    assert iana.headers["preference-applied"] == 'outlook.timezone="Europe/Berlin"'
    _error(
        await graph.get(
            f"/v1.0/users/{setup.max_id}/events/{event['id']}",
            headers={"Prefer": 'outlook.timezone="Mars Standard Time"'},
        ),
        400,
        "TimeZoneNotSupportedException",
    )

    selected = await graph.get(
        f"/v1.0/users/{setup.max_id}/events/{event['id']}",
        params={
            "$select": "subject",
            "$expand": f"singleValueExtendedProperties($filter=id eq '{TAG_ID}')",
        },
    )
    assert set(selected.json()) == {
        "@odata.context",
        "@odata.etag",
        "id",
        "subject",
        "singleValueExtendedProperties",
    }
    assert selected.json()["singleValueExtendedProperties"] == [
        {"id": TAG_ID, "value": "Booking-42"}
    ]

    patched = await graph.patch(
        f"/v1.0/users/{setup.max_id}/events/{event['id']}",
        json={"subject": "Dinner"},
        headers={"If-Match": event["@odata.etag"]},
    )
    assert patched.status_code == 200
    assert_event(patched.json())
    assert patched.json()["subject"] == "Dinner"
    assert patched.json()["changeKey"] != event["changeKey"]
    assert patched.json()["location"]["displayName"] == "Harry's Bar"
    message = _error(
        await graph.patch(
            f"/v1.0/users/{setup.max_id}/events/{event['id']}",
            json={"subject": "Stale"},
            headers={"If-Match": event["@odata.etag"]},
        ),
        412,
        "ErrorIrresolvableConflict",
    )
    assert "change key" in message

    assert (
        await graph.delete(f"/v1.0/users/{setup.max_id}/events/{event['id']}")
    ).status_code == 204
    _error(
        await graph.delete(f"/v1.0/users/{setup.max_id}/events/{event['id']}"),
        404,
        "ErrorItemNotFound",
    )


async def test_filter_by_extended_property(graph: httpx.AsyncClient, setup: Setup) -> None:
    base = f"/v1.0/users/{setup.max_id}/events"
    await graph.post(base, json=EVENT)
    await graph.post(base, json={"subject": "untagged"})
    found = await graph.get(
        base,
        params={"$filter": _tag_filter(TAG_ID, "BOOKING-42")},
    )
    assert found.status_code == 200
    assert [e["subject"] for e in found.json()["value"]] == [EVENT["subject"]]
    for item in found.json()["value"]:
        assert_event(item)
    wrong_case_id = TAG_ID.replace("calbridgeId", "CALBRIDGEID")
    none = await graph.get(
        base,
        params={"$filter": _tag_filter(wrong_case_id, "Booking-42")},
    )
    assert none.json()["value"] == []


async def test_rejects_what_graph_rejects(graph: httpx.AsyncClient, setup: Setup) -> None:
    base = f"/v1.0/users/{setup.max_id}/events"
    _error(
        await graph.post(base, content=b"{not json", headers={"Content-Type": "application/json"}),
        400,
        "BadRequest",
    )
    message = _error(await graph.post(base, json={"subjekt": "typo"}), 400, "RequestBodyRead")
    assert "'subjekt' does not exist" in message
    _error(await graph.post(base, json={"showAs": "busyish"}), 400, "RequestBodyRead")
    _error(
        await graph.post(
            base, json={"start": {"dateTime": "2020-01-01T10:00:00", "timeZone": "Nowhere"}}
        ),
        400,
        "TimeZoneNotSupportedException",
    )
    _error(await graph.get(f"{base}/AAkALgdoesnotexist"), 404, "ErrorItemNotFound")


async def test_calendars_list_the_primary_calendar(graph: httpx.AsyncClient, setup: Setup) -> None:
    listed = await graph.get(f"/v1.0/users/{setup.max_id}/calendars")
    assert listed.status_code == 200, listed.text
    assert listed.json()["@odata.context"].endswith(f"/$metadata#users('{setup.max_id}')/calendars")
    (calendar,) = listed.json()["value"]
    assert_valid(calendar, "microsoft.graph.calendar")
    assert calendar["isDefaultCalendar"] is True and calendar["name"] == "Calendar"
    assert calendar["owner"] == {"name": "Max", "address": "max@contoso.example"}
    primary = await graph.get(f"/v1.0/users/{setup.max_id}/calendar")
    assert primary.status_code == 200 and primary.json()["id"] == calendar["id"]


async def test_empty_path_segments_are_ignored(graph: httpx.AsyncClient, setup: Setup) -> None:
    """msgraph-sdk joins a base URL that httpx ends with '/' to templates that start with '/'."""
    await graph.post(f"/v1.0/users/{setup.max_id}/events", json=EVENT)
    response = await graph.get(f"/v1.0//users/{setup.max_id}//events")
    assert response.status_code == 200, response.text
    assert [e["subject"] for e in response.json()["value"]] == [EVENT["subject"]]
