"""Booking resources, employees and synchronizations: LIST shapes, show, and 404s."""

from __future__ import annotations

import re
from typing import Any

import httpx

from tests.sandbox.bookingtime.conftest import World, assert_failure


async def content(api: httpx.AsyncClient, url: str) -> Any:
    response = await api.get(url)
    assert response.status_code == 200, response.text
    return response.json()["content"]


async def test_booking_resources(api: httpx.AsyncClient, world: World) -> None:
    room = world.control.add_booking_resource(world.org, name="Raum 1", category="LOCATION")
    listed = await content(api, world.api("bookingResource/list"))
    assert set(listed) == {"class", "recordTotal", "recordLimit", "recordList"}
    assert (listed["class"], listed["recordTotal"], listed["recordLimit"]) == ("LIST", 3, 9999)
    by_id = {record["id"]: record for record in listed["recordList"]}
    assert set(by_id) == {world.max_br, world.erika_br, room}
    assert all(re.fullmatch(r"br[a-zA-Z0-9]{30}", rid) for rid in by_id)
    assert by_id[world.max_br]["class"] == "BOOKING_RESOURCE"
    assert by_id[world.max_br]["category"] == "EMPLOYEE"
    assert (by_id[world.max_br]["firstName"], by_id[world.max_br]["lastName"]) == (
        "Max",
        "Mustermann",
    )
    assert by_id[room]["category"] == "LOCATION" and by_id[room]["customId"] is None
    shown = await content(api, world.api(f"bookingResource/{world.erika_br}/show"))
    assert shown == by_id[world.erika_br]
    missing = await api.get(world.api("bookingResource/br" + "0" * 30 + "/show"))
    assert_failure(missing, 404, "bookingResourceId")


async def test_employees(api: httpx.AsyncClient, world: World) -> None:
    assert (await content(api, world.api("employee/list")))["recordList"] == []
    employee_id = world.control.add_employee(
        world.org, first_name="Max", last_name="Mustermann", email="max@contoso.example"
    )
    [record] = (await content(api, world.api("employee/list")))["recordList"]
    assert re.fullmatch(r"Eh[a-zA-Z0-9]{30}", employee_id)
    assert record["class"] == "EMPLOYEE" and record["id"] == employee_id
    assert (record["firstName"], record["lastName"], record["email"]) == (
        "Max",
        "Mustermann",
        "max@contoso.example",
    )
    assert await content(api, world.api(f"employee/{employee_id}/show")) == record
    assert_failure(await api.get(world.api("employee/Ehnobody/show")), 404, "employeeId")


async def test_synchronizations(api: httpx.AsyncClient, world: World) -> None:
    sync_id = world.control.add_synchronization(world.org, world.max_br, "max@contoso.example")
    listed = await content(api, world.api("synchronization/list"))
    assert listed["recordTotal"] == 1
    [record] = listed["recordList"]
    assert re.fullmatch(r"A7[a-zA-Z0-9]{30}", sync_id)
    assert record["class"] == "SYNCHRONIZATION" and record["id"] == sync_id
    assert (record["bookingResourceId"], record["email"], record["type"]) == (
        world.max_br,
        "max@contoso.example",
        "GRAPH",
    )


async def test_wrong_method_is_405(api: httpx.AsyncClient, world: World) -> None:
    for method, path in (("PUT", "bookingResource/list"), ("DELETE", "employee/Eh1/show")):
        assert_failure(await api.request(method, world.api(path)), 405)
