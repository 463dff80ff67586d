"""Hostile answers through the whole client: JSON of the wrong `class`, appointments with the
SDK mocks' date typos, JSON cut short, a 404 that is the organisation's, a redirect. bookingtime's
side is an httpx.MockTransport answering literal documents."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.bookingtime_api import (
    AppCredentials,
    BookingtimeClient,
    InvalidRecord,
    NotFound,
    Transient,
    UnexpectedResponse,
)
from tests.bookingtime_api import samples
from tests.bookingtime_api.samples import ORG

AUTH_URL = "https://auth.bookingtime.test/oauth/token"
API_URL = "https://api.bookingtime.test/app/v3/"
BASE = f"/app/v3/de/organization/{ORG}/"
WEEK = "appointment/year/2026/week/13/listWeek"
APPOINTMENT_ID = samples.appointment(1)["id"]

Answer = Callable[[], httpx.Response]


def _json(status: int, document: Any) -> Answer:
    return lambda: httpx.Response(status, content=json.dumps(document).encode())


def _client(answers: dict[str, Answer]) -> tuple[BookingtimeClient, list[str]]:
    seen: list[str] = []

    def handle(request: httpx.Request) -> httpx.Response:
        if str(request.url) == AUTH_URL:
            return httpx.Response(
                200, json={"refresh_token": "r", "access_token": "a", "expires_in": 300}
            )
        seen.append(str(request.url))
        return answers[request.url.raw_path.decode().removeprefix(BASE)]()

    http = httpx.AsyncClient(transport=httpx.MockTransport(handle))
    client = BookingtimeClient(
        http,
        AppCredentials("70HostileApp", SecretStr("s")),
        api_url=API_URL,
        auth_url=AUTH_URL,
        locale="de",
    )
    return client, seen


async def test_a_week_of_the_wrong_class_is_an_unexpected_response() -> None:
    client, _ = _client(
        {WEEK: _json(200, samples.envelope(json.loads(samples.LIST_MOCK)["content"]))}
    )
    with pytest.raises(UnexpectedResponse, match="class 'LIST', not RANGE_LIST") as raised:
        await client.list_week(ORG, 2026, 13)
    assert raised.value.permanent


async def test_appointments_with_date_typos_are_listed_apart_with_their_field() -> None:
    items = [
        samples.appointment(1),
        samples.appointment(2, start=samples.TYPO_DAY),
        samples.appointment(3, end=samples.TYPO_OFFSET),
        samples.appointment(4, timestampEdit=samples.CUSTOM_ENTITY_TIMESTAMP),
        samples.appointment(5),
    ]
    client, _ = _client({WEEK: _json(200, samples.envelope(samples.range_list(items)))})
    window = await client.list_week(ORG, 2026, 13)
    assert [a.id for a in window.appointments] == [items[0]["id"], items[4]["id"]]
    assert [(e.record_id, e.field, e.value) for e in window.invalid] == [
        (items[1]["id"], "start", samples.TYPO_DAY),
        (items[2]["id"], "end", samples.TYPO_OFFSET),
        (items[3]["id"], "timestampEdit", samples.CUSTOM_ENTITY_TIMESTAMP),
    ]


async def test_show_of_an_unreadable_appointment_raises_its_precise_error() -> None:
    broken = samples.appointment(1, start=samples.CUSTOM_ENTITY_TIMESTAMP)
    client, _ = _client(
        {f"appointment/{APPOINTMENT_ID}/show": _json(200, samples.envelope(broken))}
    )
    with pytest.raises(InvalidRecord) as raised:
        await client.show_appointment(ORG, APPOINTMENT_ID)
    assert (raised.value.record_id, raised.value.field) == (APPOINTMENT_ID, "start")


async def test_json_cut_short_is_transient() -> None:
    body = json.dumps(samples.envelope(samples.range_list([samples.appointment(1)]))).encode()
    client, _ = _client({WEEK: lambda: httpx.Response(200, content=body[: len(body) // 2])})
    with pytest.raises(Transient, match="not JSON"):
        await client.list_week(ORG, 2026, 13)


async def test_only_a_404_of_the_record_means_it_is_gone() -> None:
    show = f"appointment/{APPOINTMENT_ID}/show"
    client, _ = _client({show: _json(404, samples.failure("Appointment not found."))})
    assert await client.show_appointment(ORG, APPOINTMENT_ID) is None
    client, _ = _client(
        {show: _json(404, samples.failure("Organization not found.", "organizationId"))}
    )
    with pytest.raises(NotFound) as raised:
        await client.show_appointment(ORG, APPOINTMENT_ID)
    assert raised.value.parameter == "organizationId"


async def test_a_redirect_is_not_followed() -> None:
    elsewhere = lambda: httpx.Response(302, headers={"Location": "https://evil.test/steal"})  # noqa: E731
    client, seen = _client({"employee/list": elsewhere})
    with pytest.raises(UnexpectedResponse, match="302") as raised:
        await client.list_employees(ORG)
    assert raised.value.permanent
    assert seen == [f"{API_URL}de/organization/{ORG}/employee/list"]


async def test_path_values_cannot_leave_their_segment() -> None:
    client, seen = _client(
        {"appointment/a%2F..%2F..%2Fx%3Fy/identify": _json(404, samples.failure("None."))}
    )
    assert await client.identify_appointment(ORG, "a/../../x?y") is None
    assert seen == [f"{API_URL}de/organization/{ORG}/appointment/a%2F..%2F..%2Fx%3Fy/identify"]
    with pytest.raises(ValueError, match="appointment_id"):
        await client.show_appointment(ORG, "../employee/list")
    with pytest.raises(ValueError, match="organization_id"):
        await client.list_employees("f6/../../admin")
