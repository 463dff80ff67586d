"""A LIST bookingtime shortened (recordTotal beyond its records) read again page by page from
`index/{page}` up to pageTotal, with a hard cap: against the emulator over real HTTPS, its
`list_limit` switch set low so that 60 records need three pages of 25."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import httpx
import pytest
from pydantic import SecretStr

from app.bookingtime_api import AppCredentials, BookingtimeClient, Transient, UnexpectedResponse
from app.config import Settings
from tests.bookingtime_api.conftest import BERLIN, Setup

COUNT = 60  # pages of 25, 25 and 10


def sent_paths(http: httpx.AsyncClient) -> list[str]:
    """The App API paths sent on `http` from now on (after the organisation), in order."""
    paths: list[str] = []

    async def record(request: httpx.Request) -> None:
        _, found, path = request.url.path.partition("/organization/")
        if found:
            paths.append(path.split("/", 1)[1])

    http.event_hooks = {**http.event_hooks, "request": [*http.event_hooks["request"], record]}
    return paths


def add_resources(setup: Setup) -> list[str]:
    """COUNT booking resources in all; every id in the order bookingtime lists them."""
    added = [
        setup.control.add_booking_resource(setup.org, name=f"Raum {n}", category="LOCATION")
        for n in range(COUNT - 2)
    ]
    return [setup.max_id, setup.erika_id, *added]


async def test_a_complete_list_is_read_in_one_request(
    client: BookingtimeClient, setup: Setup, http: httpx.AsyncClient
) -> None:
    everyone = add_resources(setup)
    paths = sent_paths(http)
    listing = await client.list_booking_resources(setup.org)
    assert [r.id for r in listing.items] == everyone and listing.invalid == []
    assert paths == ["bookingResource/list"]


async def test_shortened_lists_are_read_page_by_page(
    client: BookingtimeClient, setup: Setup, http: httpx.AsyncClient
) -> None:
    control, org = setup.control, setup.org
    resources = add_resources(setup)
    for n in range(COUNT):
        email = f"e{n}@contoso.example"
        control.add_employee(org, first_name=f"E{n}", last_name="Muster", email=email)
        control.add_synchronization(org, resources[n], email)
    control.switches.list_limit = 10
    paths = sent_paths(http)

    booking_resources = await client.list_booking_resources(org)
    employees = await client.list_employees(org)
    synchronizations = await client.list_synchronizations(org)

    assert [r.id for r in booking_resources.items] == resources
    assert [e.first_name for e in employees.items] == [f"E{n}" for n in range(COUNT)]
    assert [(s.booking_resource_id, s.email) for s in synchronizations.items] == [
        (resources[n], f"e{n}@contoso.example") for n in range(COUNT)
    ]
    assert not (booking_resources.invalid or employees.invalid or synchronizations.invalid)
    assert paths == [
        f"{collection}/{page}"
        for collection in ("bookingResource", "employee", "synchronization")
        for page in ("list", "index/1", "index/2", "index/3")
    ]


async def test_shortened_exception_lists_are_read_page_by_page(
    client: BookingtimeClient, setup: Setup, http: httpx.AsyncClient
) -> None:
    org, start = setup.org, datetime(2026, 6, 1, 8, tzinfo=ZoneInfo(BERLIN))
    added = [
        await client.add_exception(
            org,
            booking_resource_id=setup.max_id if n < COUNT - 1 else setup.erika_id,
            start=start + timedelta(hours=n),
            end=start + timedelta(hours=n, minutes=30),
            type="FREE",
            name=f"busy {n}",
        )
        for n in range(COUNT)
    ]
    setup.control.switches.list_limit = 10
    paths = sent_paths(http)

    everything = await client.list_exceptions(org)
    of_max = await client.list_resource_exceptions(org, setup.max_id)
    of_erika = await client.list_resource_exceptions(org, setup.erika_id)

    assert [e.id for e in everything.items] == [e.id for e in added]
    assert everything.items == added  # the same records the adds answered
    assert [e.id for e in of_max.items] == [e.id for e in added[:-1]]
    assert [e.id for e in of_erika.items] == [added[-1].id]
    for_max = f"bookingResource/{setup.max_id}/availabilityException"
    assert paths == [
        "availabilityException/list",
        *(f"availabilityException/index/{n}" for n in (1, 2, 3)),
        f"{for_max}/list",
        *(f"{for_max}/index/{n}" for n in (1, 2, 3)),
        f"bookingResource/{setup.erika_id}/availabilityException/list",
    ]


async def test_pages_beyond_the_cap_are_an_error_not_a_shortened_list(
    setup: Setup, http: httpx.AsyncClient, settings: Settings
) -> None:
    add_resources(setup)
    setup.control.switches.list_limit = 10
    client = BookingtimeClient(
        http,
        AppCredentials(setup.client_id, SecretStr(setup.secret)),
        api_url=settings.bookingtime.api_url,
        auth_url=settings.bookingtime.auth_url,
        locale=settings.bookingtime.locale,
        clock=setup.now,
        max_pages=2,
    )
    paths = sent_paths(http)
    with pytest.raises(UnexpectedResponse, match="3 pages; calbridge follows at most 2") as raised:
        await client.list_booking_resources(setup.org)
    assert raised.value.permanent and raised.value.code == "too_many_pages"
    assert paths == ["bookingResource/list", "bookingResource/index/1", "bookingResource/index/2"]


async def test_a_failed_page_fails_the_whole_list(
    client: BookingtimeClient, setup: Setup, http: httpx.AsyncClient
) -> None:
    add_resources(setup)
    setup.control.switches.list_limit = 10
    setup.sandbox.control.faults.add("503", path="/bookingResource/index/2$", count=1)
    paths = sent_paths(http)
    with pytest.raises(Transient):
        await client.list_booking_resources(setup.org)
    assert paths == ["bookingResource/list", "bookingResource/index/1", "bookingResource/index/2"]
    assert len((await client.list_booking_resources(setup.org)).items) == COUNT
    assert paths[3:] == [
        "bookingResource/list",
        *(f"bookingResource/index/{n}" for n in (1, 2, 3)),
    ]
