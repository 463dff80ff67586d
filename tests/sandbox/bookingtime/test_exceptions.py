"""availabilityException CRUD as the busy write-back uses it: identify before create, the type
check (a switch), partial edit, delete, both lists, and 400s naming the parameter."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest

from tests.sandbox.bookingtime.conftest import World, assert_failure


def body(world: World, **overrides: Any) -> dict[str, Any]:
    return {
        "name": "Outlook: busy",
        "type": "FREE",
        "bookingResourceId": world.max_br,
        "start": "2026-10-29T12:00:00+01:00",
        "end": "2026-10-29T19:00:00+01:00",
        **overrides,
    }


async def add(api: httpx.AsyncClient, world: World, **overrides: Any) -> dict[str, Any]:
    response = await api.post(world.api("availabilityException/add"), json=body(world, **overrides))
    assert response.status_code == 201, response.text
    [message] = response.json()["messageList"]
    assert message["type"] == "success" and message["parameter"] is None
    return dict(response.json()["content"])


async def test_identify_before_create(api: httpx.AsyncClient, world: World) -> None:
    identify = world.api("availabilityException/cb-1a2b/identify")
    assert_failure(await api.get(identify), 404, "customId")
    created = await add(api, world, customId="cb-1a2b")
    assert re.fullmatch(r"ac[a-zA-Z0-9]{30}", created["id"])
    assert created == {
        "class": "AVAILABILITY_EXCEPTION",
        "id": created["id"],
        "customId": "cb-1a2b",
        "name": "Outlook: busy",
        "type": "FREE",
        "start": "2026-10-29T12:00:00+01:00",
        "end": "2026-10-29T19:00:00+01:00",
        "bookingResourceId": world.max_br,
        "appointmentTemplateId": None,
        "organizationId": world.org,
    }
    found = await api.get(identify)
    assert found.status_code == 200 and found.json()["content"] == created
    shown = await api.get(world.api(f"availabilityException/{created['id']}/show"))
    assert shown.json()["content"] == created
    assert world.control.exceptions(world.org) == [created]
    # The customId is the idempotency key: a second create with it is refused.
    again = await api.post(
        world.api("availabilityException/add"), json=body(world, customId="cb-1a2b")
    )
    assert_failure(again, 400, "customId")


async def test_times_are_shown_in_the_organization_zone(
    api: httpx.AsyncClient, world: World
) -> None:
    created = await add(api, world, start="2026-10-24T08:00:00Z", end="2026-10-26T08:00:00Z")
    assert (created["start"], created["end"]) == (
        "2026-10-24T10:00:00+02:00",
        "2026-10-26T09:00:00+01:00",
    )


async def test_type_check_follows_the_switch(api: httpx.AsyncClient, world: World) -> None:
    refused = await api.post(
        world.api("availabilityException/add"), json=body(world, type="BLOCKED")
    )
    assert "Allowed values: FREE." in assert_failure(refused, 400, "type")
    assert world.control.exceptions(world.org) == []

    world.control.switches.exception_types = frozenset({"FREE", "BLOCKED"})
    created = await add(api, world, type="BLOCKED")
    assert created["type"] == "BLOCKED"
    world.control.switches.exception_types = frozenset({"FREE"})
    edit = world.api(f"availabilityException/{created['id']}/edit")
    refused_edit = await api.put(edit, json={"type": "BLOCKED"})
    assert "Allowed values: FREE." in assert_failure(refused_edit, 400, "type")


@pytest.mark.parametrize("missing", ["name", "type", "bookingResourceId", "start", "end"])
async def test_missing_parameters_are_named(
    api: httpx.AsyncClient, world: World, missing: str
) -> None:
    sent = body(world)
    del sent[missing]
    response = await api.post(world.api("availabilityException/add"), json=sent)
    assert assert_failure(response, 400, missing) == "This parameter is missing."


@pytest.mark.parametrize(
    ("overrides", "parameter"),
    [
        ({"start": "2026-10-29 12:00"}, "start"),
        ({"start": "2026-10-29T12:00:00"}, "start"),  # no offset
        ({"end": 5}, "end"),
        ({"end": "2026-10-29T11:00:00+01:00"}, "end"),  # before the start
        ({"bookingResourceId": "br" + "0" * 30}, "bookingResourceId"),
        ({"name": ""}, "name"),
        ({"customId": 7}, "customId"),
    ],
)
async def test_bad_values_are_named(
    api: httpx.AsyncClient, world: World, overrides: dict[str, Any], parameter: str
) -> None:
    response = await api.post(world.api("availabilityException/add"), json=body(world, **overrides))
    assert_failure(response, 400, parameter)


async def test_body_that_is_not_json(api: httpx.AsyncClient, world: World) -> None:
    response = await api.post(world.api("availabilityException/add"), content=b"{name")
    assert "JSON" in assert_failure(response, 400)


async def test_partial_edit_and_delete(api: httpx.AsyncClient, world: World) -> None:
    created = await add(api, world, customId="cb-1")
    edit = world.api(f"availabilityException/{created['id']}/edit")
    changes = {"name": "Outlook: busy (moved)", "end": "2026-10-29T20:00:00+01:00"}
    response = await api.put(edit, json=changes)
    assert response.status_code == 200, response.text
    edited = response.json()["content"]
    assert edited == {**created, **changes}
    assert response.json()["messageList"][0]["type"] == "success"
    backwards = await api.put(edit, json={"start": "2026-10-29T21:00:00+01:00"})
    assert_failure(backwards, 400, "end")
    assert world.control.exceptions(world.org) == [edited]  # a refused edit changes nothing

    deleted = await api.delete(world.api(f"availabilityException/{created['id']}/delete"))
    assert deleted.status_code == 200 and deleted.json()["content"] == []
    for url in (
        world.api(f"availabilityException/{created['id']}/show"),
        world.api(f"availabilityException/{created['id']}/delete"),
    ):
        method = "DELETE" if url.endswith("delete") else "GET"
        assert_failure(await api.request(method, url), 404, "availabilityExceptionId")
    assert_failure(await api.put(edit, json={"name": "x"}), 404, "availabilityExceptionId")
    assert_failure(await api.get(world.api("availabilityException/cb-1/identify")), 404, "customId")


async def test_lists_per_organization_and_booking_resource(
    api: httpx.AsyncClient, world: World
) -> None:
    late = await add(api, world, start="2026-10-30T08:00:00+01:00", end="2026-10-30T09:00:00+01:00")
    early = await add(api, world)
    erikas = await add(
        api, world, bookingResourceId=world.erika_br, start="2026-10-29T15:00:00+01:00"
    )
    listed = (await api.get(world.api("availabilityException/list"))).json()["content"]
    assert (listed["class"], listed["recordTotal"], listed["recordLimit"]) == ("LIST", 3, 9999)
    assert [r["id"] for r in listed["recordList"]] == [early["id"], erikas["id"], late["id"]]
    for_max = await api.get(world.api(f"bookingResource/{world.max_br}/availabilityException/list"))
    assert [r["id"] for r in for_max.json()["content"]["recordList"]] == [early["id"], late["id"]]
    unknown = await api.get(world.api("bookingResource/brX/availabilityException/list"))
    assert_failure(unknown, 404, "bookingResourceId")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "availabilityException/add"),
        ("POST", "availabilityException/list"),
        ("GET", "availabilityException/ac1/edit"),
        ("POST", "availabilityException/ac1/delete"),
        ("DELETE", "availabilityException/ac1/show"),
    ],
)
async def test_wrong_method_is_405(
    api: httpx.AsyncClient, world: World, method: str, path: str
) -> None:
    assert_failure(await api.request(method, world.api(path)), 405)
