"""Issue 18 through the admin API: mailboxes are stored as what they look like (NFKC, one IDNA
form, no mixed scripts) and extreme expiry dates are a 422 naming the field, never a 500."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from app.db import Database
from tests.admin.conftest import ORG, connection_body, raw_rows
from tests.helpers import assert_problem

CONNECTION = f"/api/v1/connections/{ORG}"
EMPLOYEE = f"{CONNECTION}/employees/brAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        # Fullwidth letters and at sign: NFKC makes them the plain ones.
        ("\uff4d\uff41\uff58\uff20contoso.example", "max@contoso.example"),
        # An internationalised domain, in Unicode or in punycode, is stored in one ASCII form.
        ("Max@B\u00dcCHER.example", "max@xn--bcher-kva.example"),
        ("max@xn--bcher-kva.example", "max@xn--bcher-kva.example"),
    ],
)
async def test_mailbox_is_stored_normalised(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    connection: dict[str, Any],
    given: str,
    stored: str,
) -> None:
    response = await client.put(EMPLOYEE, json={"mailbox": given}, headers=admin_headers)
    assert response.status_code == 201, response.text
    assert response.json()["mailbox"] == stored
    assert await raw_rows(database, "SELECT mailbox FROM employee") == [{"mailbox": stored}]


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ("m\u0430x@contoso.example", "U+0430 CYRILLIC SMALL LETTER A"),
        ("max\u03b1@contoso.example", "U+03B1 GREEK SMALL LETTER ALPHA"),
        ("max@c\u043entoso.example", "U+043E CYRILLIC SMALL LETTER O"),
    ],
)
async def test_mixed_script_mailbox_is_422_naming_the_confusable(
    client: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    connection: dict[str, Any],
    given: str,
    named: str,
) -> None:
    response = await client.put(EMPLOYEE, json={"mailbox": given}, headers=admin_headers)
    body = assert_problem(response, 422, "validation_failed")
    assert body["detail"] == "invalid or missing: mailbox"
    [error] = body["errors"]
    assert error["field"] == "mailbox"
    assert named in error["message"]
    # The message must not show the look-alike address itself: it would read as the real one.
    assert given not in response.text and given.split("@")[0] not in response.text
    assert await raw_rows(database, "SELECT id FROM employee") == []


async def test_verify_refuses_a_mixed_script_mailbox(
    client: httpx.AsyncClient, admin_headers: dict[str, str], connection: dict[str, Any]
) -> None:
    response = await client.post(
        f"{CONNECTION}/verify", json={"mailbox": "m\u0430x@contoso.example"}, headers=admin_headers
    )
    body = assert_problem(response, 422, "validation_failed")
    assert [error["field"] for error in body["errors"]] == ["mailbox"]
    assert "U+0430 CYRILLIC SMALL LETTER A" in body["errors"][0]["message"]


@pytest.mark.parametrize(
    "expires",
    [
        "9999-12-31",
        "9999-12-31T23:00:00-05:00",  # converting it to UTC overflows
        "0001-01-01",
        "0001-01-01T00:00:00+05:00",
        "2100-01-01",
        "1999-12-31T23:59:59Z",
    ],
)
async def test_extreme_secret_expiry_is_422_naming_the_field(
    client: httpx.AsyncClient, admin_headers: dict[str, str], database: Database, expires: str
) -> None:
    response = await client.put(
        CONNECTION, json=connection_body(client_secret_expires_at=expires), headers=admin_headers
    )
    body = assert_problem(response, 422, "validation_failed")
    assert body["detail"] == "invalid or missing: client_secret_expires_at"
    [error] = body["errors"]
    assert error["field"] == "client_secret_expires_at"
    assert "2000-01-01" in error["message"] and "2100-01-01" in error["message"]
    assert await raw_rows(database, "SELECT id FROM connection") == []


async def test_extreme_secret_expiry_on_update_keeps_the_stored_date(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    created = await client.put(
        CONNECTION,
        json=connection_body(client_secret_expires_at="2099-12-31"),
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    response = await client.put(
        CONNECTION,
        json=connection_body(client_secret=..., client_secret_expires_at="9999-12-31"),
        headers=admin_headers,
    )
    assert_problem(response, 422, "validation_failed")
    stored = (await client.get(CONNECTION, headers=admin_headers)).json()
    assert stored["client_secret_expires_at"].startswith("2099-12-31")
    assert stored["secret_state"] == "ok"
