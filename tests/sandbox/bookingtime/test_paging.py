"""PAGINATION_LIST `index/{page}` routes (25 per page, 1-based) beside each LIST, and the
`list_limit` switch that shortens a LIST while its recordTotal counts every record."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.sandbox.bookingtime.conftest import World, assert_failure

KEYS = {
    "class",
    "pageCurrent",
    "pageTotal",
    "recordFrom",
    "recordTo",
    "recordTotal",
    "recordPerPage",
    "recordList",
}


async def content(api: httpx.AsyncClient, url: str) -> Any:
    response = await api.get(url)
    assert response.status_code == 200, response.text
    return response.json()["content"]


def add_resources(world: World, count: int) -> list[str]:
    """`count` more booking resources; returns every id in the order the lists give them."""
    added = [
        world.control.add_booking_resource(world.org, name=f"Raum {number}", category="LOCATION")
        for number in range(count)
    ]
    return [world.max_br, world.erika_br, *added]


async def test_index_pages_add_up_to_the_list(api: httpx.AsyncClient, world: World) -> None:
    everyone = add_resources(world, 58)  # 60 in all: pages of 25, 25 and 10
    pages = [await content(api, world.api(f"bookingResource/index/{n}")) for n in (1, 2, 3)]
    for number, page in enumerate(pages, start=1):
        assert set(page) == KEYS
        assert (page["class"], page["pageCurrent"], page["pageTotal"]) == (
            "PAGINATION_LIST",
            number,
            3,
        )
        assert (page["recordTotal"], page["recordPerPage"]) == (60, 25)
    assert [(p["recordFrom"], p["recordTo"]) for p in pages] == [(1, 25), (26, 50), (51, 60)]
    assert [len(p["recordList"]) for p in pages] == [25, 25, 10]
    paged_ids = [r["id"] for p in pages for r in p["recordList"]]
    listed = await content(api, world.api("bookingResource/list"))
    assert paged_ids == [r["id"] for r in listed["recordList"]] == everyone
    assert pages[0]["recordList"][0] == listed["recordList"][0]  # the same detailed records


async def test_an_empty_collection_has_one_empty_page(api: httpx.AsyncClient, world: World) -> None:
    # The SDK's own PAGINATION_LIST mock, field for field.
    assert await content(api, world.api("employee/index/1")) == {
        "class": "PAGINATION_LIST",
        "pageCurrent": 1,
        "pageTotal": 1,
        "recordFrom": 1,
        "recordTo": 0,
        "recordTotal": 0,
        "recordPerPage": 25,
        "recordList": [],
    }


async def test_a_page_beyond_the_last_is_empty(api: httpx.AsyncClient, world: World) -> None:
    add_resources(world, 28)  # 30 in all: two pages
    beyond = await content(api, world.api("bookingResource/index/3"))
    assert (beyond["pageCurrent"], beyond["pageTotal"], beyond["recordTotal"]) == (3, 2, 30)
    assert (beyond["recordFrom"], beyond["recordTo"], beyond["recordList"]) == (51, 50, [])


@pytest.mark.parametrize("page", ["0", "00", "-1", "x", "1.5", "9999999999"])
async def test_a_bad_page_is_400_naming_page(
    api: httpx.AsyncClient, world: World, page: str
) -> None:
    assert_failure(await api.get(world.api(f"bookingResource/index/{page}")), 400, "page")


async def test_employees_and_synchronizations_are_paged(
    api: httpx.AsyncClient, world: World
) -> None:
    for number in range(27):
        world.control.add_employee(
            world.org, first_name=f"E{number}", last_name="Muster", email=f"e{number}@x.example"
        )
        world.control.add_synchronization(world.org, world.max_br, f"e{number}@x.example")
    for collection in ("employee", "synchronization"):
        second = await content(api, world.api(f"{collection}/index/2"))
        assert (second["pageTotal"], second["recordTotal"], len(second["recordList"])) == (2, 27, 2)
    [first, second] = [
        (await content(api, world.api(f"employee/index/{n}")))["recordList"] for n in (1, 2)
    ]
    assert [e["firstName"] for e in first + second] == [f"E{n}" for n in range(27)]


async def test_exceptions_are_paged_in_list_order(api: httpx.AsyncClient, world: World) -> None:
    start = world.sandbox.control.clock.now().replace(microsecond=0) + timedelta(days=1)
    for number in reversed(range(26)):  # added latest first; lists go by start
        begins = start + timedelta(hours=number)
        for br in (world.max_br, world.erika_br) if number < 3 else (world.max_br,):
            body = {
                "name": f"busy {number}",
                "type": "FREE",
                "bookingResourceId": br,
                "start": begins.isoformat(),
                "end": (begins + timedelta(minutes=30)).isoformat(),
            }
            response = await api.post(world.api("availabilityException/add"), json=body)
            assert response.status_code == 201, response.text
    listed = await content(api, world.api("availabilityException/list"))
    pages = [await content(api, world.api(f"availabilityException/index/{n}")) for n in (1, 2)]
    assert [p["pageTotal"] for p in pages] == [2, 2] and listed["recordTotal"] == 29
    assert [r["id"] for p in pages for r in p["recordList"]] == [
        r["id"] for r in listed["recordList"]
    ]
    maxs = world.api(f"bookingResource/{world.max_br}/availabilityException/index/2")
    page = await content(api, maxs)
    assert (page["pageTotal"], page["recordTotal"]) == (2, 26)
    assert [r["name"] for r in page["recordList"]] == ["busy 25"]
    erikas = await content(
        api, world.api(f"bookingResource/{world.erika_br}/availabilityException/index/1")
    )
    assert [r["name"] for r in erikas["recordList"]] == ["busy 0", "busy 1", "busy 2"]
    unknown = await api.get(world.api("bookingResource/brX/availabilityException/index/1"))
    assert_failure(unknown, 404, "bookingResourceId")


async def test_list_limit_shortens_every_list(api: httpx.AsyncClient, world: World) -> None:
    everyone = add_resources(world, 10)  # 12 in all
    world.control.add_employee(world.org, first_name="A", last_name="B", email=None)
    world.control.switches.list_limit = 5
    listed = await content(api, world.api("bookingResource/list"))
    assert (listed["recordTotal"], listed["recordLimit"]) == (12, 5)
    assert [r["id"] for r in listed["recordList"]] == everyone[:5]
    # The index pages are not shortened: they are how the rest is read.
    page = await content(api, world.api("bookingResource/index/1"))
    assert [r["id"] for r in page["recordList"]] == everyone
    world.control.switches.list_limit = 0
    for collection in ("employee", "synchronization", "availabilityException"):
        shortened = await content(api, world.api(f"{collection}/list"))
        assert shortened["recordList"] == [] and shortened["recordLimit"] == 0
    assert (await content(api, world.api("employee/list")))["recordTotal"] == 1


async def test_index_needs_a_token_for_the_organization(
    http: httpx.AsyncClient, world: World
) -> None:
    assert_failure(await http.get(world.api("employee/index/1")), 401)
