"""PAGINATION_LIST pages followed up to pageTotal (with a hard cap), and a LIST bookingtime
shortened read page by page instead. bookingtime's side is an httpx.MockTransport here: the
emulator serves no `index` routes."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.bookingtime_api import AppCredentials, BookingtimeClient, UnexpectedResponse
from tests.bookingtime_api.samples import ORG

AUTH_URL = "https://auth.bookingtime.test/oauth/token"
API_URL = "https://api.bookingtime.test/app/v3/"
PAGE = re.compile(r"/app/v3/de/organization/(f6\w{30})/employee/index/(\d+)$")


def employee(number: int) -> dict[str, Any]:
    return {
        "class": "EMPLOYEE",
        "id": f"EhPagedEmployee{number:017d}",
        "firstName": f"E{number}",
        "lastName": "Muster",
        "email": f"e{number}@contoso.example",
    }


class FakeBookingtime:
    """`employee/list` shortened to `listed` of `total` records; `index` pages of 25."""

    def __init__(self, total: int, listed: int, page_total: int | None = None) -> None:
        self.total, self.listed, self.page_total = total, listed, page_total
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if str(request.url) == AUTH_URL:
            form = dict(x.split("=") for x in request.content.decode().split("&"))
            key = "refresh_token" if form["grant_type"] == "client_credentials" else "access_token"
            return httpx.Response(200, json={key: f"{key}-value", "expires_in": 300})
        assert request.headers["Authorization"] == "Bearer access_token-value"
        everyone = [employee(n) for n in range(1, self.total + 1)]
        if request.url.path.endswith("/employee/list"):
            content = {
                "class": "LIST",
                "recordTotal": self.total,
                "recordLimit": self.listed,
                "recordList": everyone[: self.listed],
            }
            return httpx.Response(200, json={"messageList": [], "content": content})
        match = PAGE.search(request.url.path)
        assert match is not None and match.group(1) == ORG, request.url.path
        number = int(match.group(2))
        page_total = self.page_total or max(1, -(-self.total // 25))
        content = {
            "class": "PAGINATION_LIST",
            "pageCurrent": number,
            "pageTotal": page_total,
            "recordFrom": (number - 1) * 25 + 1,
            "recordTo": min(number * 25, self.total),
            "recordTotal": self.total,
            "recordPerPage": 25,
            "recordList": everyone[(number - 1) * 25 : number * 25],
        }
        return httpx.Response(200, content=json.dumps({"messageList": [], "content": content}))


def _client(fake: FakeBookingtime, max_pages: int = 400) -> BookingtimeClient:
    http = httpx.AsyncClient(transport=httpx.MockTransport(fake))
    return BookingtimeClient(
        http,
        AppCredentials("70PagingApp", SecretStr("paging-secret")),
        api_url=API_URL,
        auth_url=AUTH_URL,
        locale="de",
        max_pages=max_pages,
    )


async def test_a_complete_list_is_read_in_one_request() -> None:
    fake = FakeBookingtime(total=30, listed=9999)
    listing = await _client(fake).list_employees(ORG)
    assert len(listing.items) == 30 and listing.invalid == []
    assert [p for p in fake.paths if "/organization/" in p] == [
        f"/app/v3/de/organization/{ORG}/employee/list"
    ]


async def test_a_shortened_list_is_read_page_by_page_up_to_page_total() -> None:
    fake = FakeBookingtime(total=61, listed=10)
    listing = await _client(fake).list_employees(ORG)
    assert [e.first_name for e in listing.items] == [f"E{n}" for n in range(1, 62)]
    assert [p.rsplit("/", 2)[-2:] for p in fake.paths if "/index/" in p] == [
        ["index", "1"],
        ["index", "2"],
        ["index", "3"],
    ]


async def test_pages_beyond_the_cap_are_an_error_not_a_shortened_list() -> None:
    fake = FakeBookingtime(total=100, listed=10, page_total=1000)
    with pytest.raises(
        UnexpectedResponse, match="1000 pages; calbridge follows at most 3"
    ) as raised:
        await _client(fake, max_pages=3).list_employees(ORG)
    assert raised.value.permanent
    assert len([p for p in fake.paths if "/index/" in p]) == 3
