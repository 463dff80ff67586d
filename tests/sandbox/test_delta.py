"""calendarView delta over HTTPS: paged first round, later rounds with exactly the changes,
`@removed`, replays, 410 for lost tokens, and every body checked against Graph's schemas."""

from __future__ import annotations

from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx

from tests.sandbox.conftest import Setup
from tests.sandbox.schema import assert_event, assert_graph_error, assert_valid

WINDOW = {"startdatetime": "2024-06-01T00:00:00Z", "enddatetime": "2024-07-01T00:00:00Z"}
IMMUTABLE = 'IdType="ImmutableId"'


def _event(subject: str, day: int, **extra: Any) -> dict[str, Any]:
    return {
        "subject": subject,
        "start": {"dateTime": f"2024-06-{day:02d}T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": f"2024-06-{day:02d}T11:00:00", "timeZone": "UTC"},
        **extra,
    }


async def _create(graph: httpx.AsyncClient, setup: Setup, body: dict[str, Any]) -> str:
    response = await graph.post(
        f"/v1.0/users/{setup.max_id}/events", json=body, headers={"Prefer": IMMUTABLE}
    )
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def _check_page(body: dict[str, Any]) -> None:
    assert_valid(body, "x-synth.eventDeltaResponse")
    assert ("@odata.nextLink" in body) != ("@odata.deltaLink" in body)
    for item in body["value"]:
        assert item["@odata.type"] == "#microsoft.graph.event"
        if "@removed" in item:
            assert set(item) == {"@odata.type", "id", "@removed"}
        else:
            assert item["@odata.etag"] == f'W/"{item["changeKey"]}"'
            assert_event(item)


async def _round(
    graph: httpx.AsyncClient, url: str, *, prefer: str = IMMUTABLE, **params: str
) -> tuple[list[dict[str, Any]], str, list[dict[str, Any]]]:
    """Follows nextLinks to the deltaLink; returns the items, the deltaLink and every page."""
    items: list[dict[str, Any]] = []
    pages: list[dict[str, Any]] = []
    next_url: str | None = url
    query: dict[str, str] | None = params or None
    while next_url is not None:
        response = await graph.get(next_url, params=query, headers={"Prefer": prefer})
        assert response.status_code == 200, response.text
        body = response.json()
        _check_page(body)
        pages.append(body)
        items += body["value"]
        query = None
        next_url = body.get("@odata.nextLink")
        if next_url is None:
            return items, body["@odata.deltaLink"], pages
    raise AssertionError("unreachable")


def _delta_url(setup: Setup) -> str:
    return f"/v1.0/users/{setup.max_id}/calendarView/delta"


async def test_first_round_pages_then_exact_changes(graph: httpx.AsyncClient, setup: Setup) -> None:
    ids = [await _create(graph, setup, _event(f"E{n}", n + 1)) for n in range(5)]
    july = {
        "subject": "July",
        "start": {"dateTime": "2024-07-01T00:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2024-07-01T01:00:00", "timeZone": "UTC"},
    }
    await _create(graph, setup, july)  # starts where the window ends: not in it
    items, delta_link, pages = await _round(
        graph, _delta_url(setup), prefer=f"odata.maxpagesize=2, {IMMUTABLE}", **WINDOW
    )
    assert [len(p["value"]) for p in pages] == [2, 2, 1]
    assert [i["id"] for i in items] == ids
    assert all(i["start"]["timeZone"] == "UTC" for i in items)
    assert all("$skiptoken=" in p["@odata.nextLink"] for p in pages[:-1])
    assert "$deltatoken=" in delta_link
    assert delta_link.startswith(f"{setup.sandbox.url}/v1.0/users/{setup.max_id}/calendarView/")
    assert pages[0]["@odata.context"].endswith("/$metadata#Collection(event)")

    # After the first round: one created, one updated over HTTP, one edited in Outlook, one deleted.
    setup.control.clock.advance(timedelta(minutes=5))
    new_id = await _create(graph, setup, _event("New", 20))
    patched = await graph.patch(
        f"/v1.0/users/{setup.max_id}/events/{ids[1]}", json={"subject": "E1 changed"}
    )
    assert patched.status_code == 200
    setup.control.outlook_edit("max@contoso.example", ids[2], {"subject": "E2 by a person"})
    deleted = await graph.delete(f"/v1.0/users/{setup.max_id}/events/{ids[3]}")
    assert deleted.status_code == 204

    changes, second_link, _ = await _round(graph, delta_link)
    by_id = {item["id"]: item for item in changes}
    assert set(by_id) == {new_id, ids[1], ids[2], ids[3]}
    assert by_id[ids[3]]["@removed"] == {"reason": "deleted"}
    assert by_id[ids[1]]["subject"] == "E1 changed"
    assert by_id[ids[2]]["subject"] == "E2 by a person"
    assert by_id[new_id]["subject"] == "New"
    assert by_id[ids[1]]["lastModifiedDateTime"] > items[1]["lastModifiedDateTime"]

    nothing, third_link, _ = await _round(graph, second_link)
    assert nothing == []
    assert third_link.startswith(f"{setup.sandbox.url}/v1.0/")


async def test_delta_with_parentheses(graph: httpx.AsyncClient, setup: Setup) -> None:
    """Graph takes `delta()` as well as `delta` (msgraph-sdk sends the former), and either
    continues the other's round."""
    ids = [await _create(graph, setup, _event(f"E{n}", n + 1)) for n in range(3)]
    items, delta_link, pages = await _round(
        graph, f"{_delta_url(setup)}()", prefer=f"odata.maxpagesize=2, {IMMUTABLE}", **WINDOW
    )
    assert [i["id"] for i in items] == ids and len(pages) == 2
    below_calendar = f"/v1.0/users/{setup.max_id}/calendar/calendarView/delta()"
    again, _, _ = await _round(graph, below_calendar, **WINDOW)
    assert [i["id"] for i in again] == ids
    token = delta_link.split("$deltatoken=", 1)[1]
    moved = await graph.patch(
        f"/v1.0/users/{setup.max_id}/events/{ids[0]}", json={"subject": "Moved"}
    )
    assert moved.status_code == 200, moved.text
    changes, _, _ = await _round(graph, f"{_delta_url(setup)}()?$deltatoken={token}")
    assert [(i["id"], i["subject"]) for i in changes] == [(ids[0], "Moved")]


async def test_out_of_window_changes_are_removed(graph: httpx.AsyncClient, setup: Setup) -> None:
    inside = await _create(graph, setup, _event("Moves away", 5))
    stays = await _create(graph, setup, _event("Stays", 6))
    _, link, _ = await _round(graph, _delta_url(setup), **WINDOW)
    moved = await graph.patch(
        f"/v1.0/users/{setup.max_id}/events/{inside}",
        json={
            "start": {"dateTime": "2024-08-05T10:00:00", "timeZone": "UTC"},
            "end": {"dateTime": "2024-08-05T11:00:00", "timeZone": "UTC"},
        },
    )
    assert moved.status_code == 200
    later = {
        **_event("Far away", 1),
        "start": {"dateTime": "2025-01-01T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": "2025-01-01T11:00:00", "timeZone": "UTC"},
    }
    far = await _create(graph, setup, later)
    changes, _, _ = await _round(graph, link)
    # Documented choice: whatever changed and is not in the window is `@removed` "deleted".
    assert {item["id"]: item.get("@removed") for item in changes} == {
        inside: {"reason": "deleted"},
        far: {"reason": "deleted"},
    }
    assert stays not in {item["id"] for item in changes}


async def test_replay_gives_the_same_answer(graph: httpx.AsyncClient, setup: Setup) -> None:
    first = await _create(graph, setup, _event("A", 3))
    _, link, _ = await _round(graph, _delta_url(setup), **WINDOW)
    await graph.patch(f"/v1.0/users/{setup.max_id}/events/{first}", json={"subject": "A2"})
    await _create(graph, setup, _event("B", 4))
    prefer = f"odata.maxpagesize=1, {IMMUTABLE}"
    once = await _round(graph, link, prefer=prefer)
    twice = await _round(graph, link, prefer=prefer)
    assert once == twice
    assert [item["subject"] for item in once[0]] == ["A2", "B"]
    # A nextLink replayed gives the same page too.
    next_link = once[2][0]["@odata.nextLink"]
    again = [(await graph.get(next_link, headers={"Prefer": prefer})).json() for _ in range(2)]
    assert again[0] == again[1] == once[2][1]


async def test_lost_tokens_are_gone(graph: httpx.AsyncClient, setup: Setup) -> None:
    await _create(graph, setup, _event("A", 3))
    _, link, pages = await _round(graph, _delta_url(setup), **WINDOW)
    assert pages
    for bad in ("$deltatoken=nonsense!", "$deltatoken=eyJoIjoieCIsInciOltdfQ", "$skiptoken=abc"):
        response = await graph.get(f"{_delta_url(setup)}?{bad}")
        assert response.status_code == 410, response.text
        assert_graph_error(response.json())
        assert response.json()["error"]["code"] == "syncStateNotFound"
        assert response.headers["location"].endswith("/calendarView/delta?$deltatoken=")

    # Another mailbox's token is unknown here.
    other = await graph.get(link.replace(setup.max_id, setup.erika_id))
    assert other.status_code == 410

    setup.control.clock.advance(timedelta(minutes=50))
    assert (await graph.get(link)).status_code == 200  # tokens don't age with the clock alone
    assert setup.sandbox.runtime.delta.expire(setup.max_id) > 0
    expired = await graph.get(link)
    assert expired.status_code == 410
    assert_graph_error(expired.json())
    location = urlsplit(expired.headers["location"])
    assert parse_qs(location.query, keep_blank_values=True) == {
        "startDateTime": ["2024-06-01T00:00:00Z"],
        "endDateTime": ["2024-07-01T00:00:00Z"],
        "$deltatoken": [""],
    }
    restarted = await graph.get(expired.headers["location"].removesuffix("&$deltatoken="))
    assert restarted.status_code == 200 and len(restarted.json()["value"]) == 1


async def test_query_errors(graph: httpx.AsyncClient, setup: Setup) -> None:
    for option in ("$select=subject", "$expand=attachments", "$filter=x", "$orderby=start"):
        response = await graph.get(
            f"{_delta_url(setup)}?startDateTime=2024-06-01T00:00:00Z"
            f"&endDateTime=2024-07-01T00:00:00Z&{option}"
        )
        assert response.status_code == 400, option
        assert_graph_error(response.json())
        assert response.json()["error"]["code"] == "ErrorInvalidUrlQuery"
    for path in (_delta_url(setup), f"/v1.0/users/{setup.max_id}/calendarView"):
        missing = await graph.get(path, params={"startDateTime": "2024-06-01T00:00:00Z"})
        assert missing.status_code == 400
        assert_graph_error(missing.json())
        assert missing.json()["error"]["code"] == "ErrorInvalidParameter"
        garbled = await graph.get(path, params={**WINDOW, "startdatetime": "June"})
        assert garbled.status_code == 400
        assert_graph_error(garbled.json())
    unauthenticated = await graph.get(
        _delta_url(setup), params=WINDOW, headers={"Authorization": ""}
    )
    assert unauthenticated.status_code == 401
    assert_graph_error(unauthenticated.json())


async def test_time_zone_preference(graph: httpx.AsyncClient, setup: Setup) -> None:
    await _create(graph, setup, _event("A", 3))
    prefer = f'outlook.timezone="Pacific Standard Time", {IMMUTABLE}'
    response = await graph.get(_delta_url(setup), params=WINDOW, headers={"Prefer": prefer})
    assert response.status_code == 200
    _check_page(response.json())
    assert response.json()["value"][0]["start"] == {
        "dateTime": "2024-06-03T03:00:00.0000000",
        "timeZone": "Pacific Standard Time",
    }
    assert 'outlook.timezone="Pacific Standard Time"' in response.headers["preference-applied"]
    view = await graph.get(
        "/v1.0/users/max@contoso.example/calendarView", params=WINDOW, headers={"Prefer": prefer}
    )
    assert view.status_code == 200
    assert view.json()["value"][0]["end"]["dateTime"] == "2024-06-03T04:00:00.0000000"


async def test_calendar_view_paging(graph: httpx.AsyncClient, setup: Setup) -> None:
    for n in range(3):
        await _create(graph, setup, _event(f"E{n}", n + 1))
    seen: list[str] = []
    url: str | None = f"/v1.0/users/{setup.max_id}/calendarView"
    params: dict[str, str] | None = WINDOW
    while url is not None:
        response = await graph.get(url, params=params, headers={"Prefer": "odata.maxpagesize=2"})
        assert response.status_code == 200, response.text
        body = response.json()
        assert_valid(body, "x-synth.eventCollectionResponse")
        for item in body["value"]:
            assert_event(item)
        seen += [item["subject"] for item in body["value"]]
        url, params = body.get("@odata.nextLink"), None
    assert seen == ["E0", "E1", "E2"]


async def test_series_in_delta(graph: httpx.AsyncClient, setup: Setup) -> None:
    series = _event(
        "Weekly",
        3,
        recurrence={
            "pattern": {"type": "weekly", "daysOfWeek": ["monday"], "firstDayOfWeek": "monday"},
            "range": {"type": "numbered", "startDate": "2024-06-03", "numberOfOccurrences": 3},
        },
    )
    master_id = await _create(graph, setup, series)
    items, link, _ = await _round(graph, _delta_url(setup), **WINDOW)
    assert [i["start"]["dateTime"][:10] for i in items] == [
        "2024-06-03",
        "2024-06-10",
        "2024-06-17",
    ]
    assert {i["seriesMasterId"] for i in items} == {master_id}
    occurrence_ids = [i["id"] for i in items]

    # A person renames the series: every occurrence comes back changed, same ids.
    setup.control.outlook_edit("max@contoso.example", master_id, {"subject": "Weekly sync"})
    renamed, link, _ = await _round(graph, link)
    assert [i["id"] for i in renamed] == occurrence_ids
    assert {i["subject"] for i in renamed} == {"Weekly sync"}

    # Shortened to two: the last occurrence is removed, the others updated.
    shorter = {
        "recurrence": {
            "pattern": {"type": "weekly", "daysOfWeek": ["monday"], "firstDayOfWeek": "monday"},
            "range": {"type": "numbered", "startDate": "2024-06-03", "numberOfOccurrences": 2},
        }
    }
    setup.control.outlook_edit("max@contoso.example", master_id, shorter)
    shortened, link, _ = await _round(graph, link)
    assert {i["id"]: "@removed" in i for i in shortened} == {
        occurrence_ids[0]: False,
        occurrence_ids[1]: False,
        occurrence_ids[2]: True,
    }

    # The whole series deleted: each occurrence removed.
    assert (await graph.delete(f"/v1.0/users/{setup.max_id}/events/{master_id}")).status_code == 204
    gone, _, _ = await _round(graph, link)
    assert {i["id"] for i in gone} == set(occurrence_ids[:2])
    assert all(i["@removed"] == {"reason": "deleted"} for i in gone)
