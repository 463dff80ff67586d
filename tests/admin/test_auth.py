"""Admin authentication: bearer tokens, bootstrap token, stored hashes, revocation."""

from __future__ import annotations

import hashlib

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import update

from app.admin.auth import AuthFailureLimiter, create_token
from app.db import Database
from app.models import AdminToken
from app.models.base import utcnow
from tests.admin.conftest import raw_rows
from tests.conftest import ADMIN_TOKEN
from tests.helpers import assert_problem

URL = "/api/v1/connections"


def assert_unauthorized(response: httpx.Response) -> None:
    assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"].startswith("Bearer")


async def new_token(database: Database, name: str = "ops") -> str:
    async with database.session_scope() as session:
        return await create_token(session, name=name)


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer "},
        {"Authorization": f"Basic {ADMIN_TOKEN}"},
        {"Authorization": f"Token {ADMIN_TOKEN}"},
        {"Authorization": ADMIN_TOKEN},
        {"Authorization": "Bearer wrong-token"},
        {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
        {"X-Api-Key": ADMIN_TOKEN},
    ],
    ids=[
        "none",
        "empty",
        "scheme-only",
        "scheme-space",
        "basic",
        "token-scheme",
        "no-scheme",
        "wrong",
        "longer",
        "other-header",
    ],
)
async def test_rejected_without_a_valid_bearer_token(
    client: httpx.AsyncClient, headers: dict[str, str]
) -> None:
    assert_unauthorized(await client.get(URL, headers=headers))


async def test_bootstrap_token_works(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.get(URL, headers=admin_headers)
    assert response.status_code == 200
    assert response.json() == []
    # Scheme names are case-insensitive (RFC 9110).
    lower = {"Authorization": f"bearer {ADMIN_TOKEN}"}
    assert (await client.get(URL, headers=lower)).status_code == 200


async def test_created_token_works_and_is_stored_hashed(
    client: httpx.AsyncClient, database: Database
) -> None:
    token = await new_token(database)
    rows = await raw_rows(database, "SELECT * FROM admin_token")
    assert len(rows) == 1
    row = rows[0]
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert all(token not in str(value) for value in row.values())
    assert row["last_used_at"] is None

    response = await client.get(URL, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200
    # The endpoint's commit records the use.
    rows = await raw_rows(database, "SELECT last_used_at FROM admin_token")
    assert rows[0]["last_used_at"] is not None

    # The hash itself is not a token.
    hashed = {"Authorization": f"Bearer {row['token_hash']}"}
    assert_unauthorized(await client.get(URL, headers=hashed))


async def test_revoked_token_is_rejected(client: httpx.AsyncClient, database: Database) -> None:
    token = await new_token(database)
    other = await new_token(database, "other")
    async with database.session_scope() as session:
        await session.execute(
            update(AdminToken).where(AdminToken.name == "ops").values(revoked_at=utcnow())
        )
    assert_unauthorized(await client.get(URL, headers={"Authorization": f"Bearer {token}"}))
    response = await client.get(URL, headers={"Authorization": f"Bearer {other}"})
    assert response.status_code == 200


async def test_without_bootstrap_token_only_stored_tokens_work(
    client: httpx.AsyncClient, app: FastAPI, database: Database, admin_headers: dict[str, str]
) -> None:
    app.state.settings = app.state.settings.model_copy(update={"admin_token": None})
    assert_unauthorized(await client.get(URL, headers=admin_headers))
    token = await new_token(database)
    response = await client.get(URL, headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


async def test_every_admin_route_requires_a_token(
    client: httpx.AsyncClient, app: FastAPI, database: Database
) -> None:
    # From the OpenAPI document: it lists every route of every included router.
    routes = [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/v1/")
        for method in operations
    ]
    assert {path for _, path in routes} >= {
        "/api/v1/connections",
        "/api/v1/connections/{organization_id}",
        "/api/v1/connections/{organization_id}/employees",
        "/api/v1/connections/{organization_id}/employees/{employee_id}",
        "/api/v1/sync-history",
    }
    # Every route gets a wrong token here: more than the failure limit allows in a minute.
    app.state.auth_failure_limiter = AuthFailureLimiter(max_failures=len(routes) + 1)
    for method, path in routes:
        url = path.replace("{organization_id}", "f6x").replace("{employee_id}", "brx")
        url = url.replace("{", "").replace("}", "")
        response = await client.request(
            method, url, json={}, headers={"Authorization": "Bearer no"}
        )
        assert_unauthorized(response)
    # Nothing was written by the refused requests.
    assert await raw_rows(database, "SELECT id FROM connection") == []
