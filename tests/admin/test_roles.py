"""Token roles: `read` sees everything but job payloads and changes nothing; `admin` does all.

The write rule hangs on the HTTP method in the one dependency every admin router carries, so the
route walks below cover routes added later without naming them.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from app.admin.auth import AuthFailureLimiter, create_token
from app.db import Database
from app.models import Job
from tests.admin.conftest import ORG, connection_body, raw_rows
from tests.helpers import assert_problem

SAFE = {"GET", "HEAD", "OPTIONS"}


async def token(database: Database, role: str, name: str | None = None) -> dict[str, str]:
    async with database.session_scope() as session:
        value = await create_token(session, name=name or role, role=role)
    return {"Authorization": f"Bearer {value}"}


def admin_routes(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) of the admin API, from the app's OpenAPI document (which every
    included router feeds), not from a list kept by hand."""
    found = [
        (method.upper(), path)
        for path, operations in app.openapi()["paths"].items()
        if path.startswith("/api/")
        for method in operations
    ]
    assert len(found) >= 10
    return found


def concrete(path: str) -> str:
    return (
        path.replace("{organization_id}", ORG)
        .replace("{employee_id}", "brAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")
        .replace("{job_id}", "1")
        .replace("{", "")
        .replace("}", "")
    )


async def test_read_token_is_refused_on_every_write_route(
    client: httpx.AsyncClient,
    app: FastAPI,
    database: Database,
    admin_headers: dict[str, str],
    connection: dict[str, Any],
) -> None:
    reader = await token(database, "read", "dashboard")
    before = await raw_rows(database, "SELECT * FROM connection")
    writes = [(m, p) for m, p in admin_routes(app) if m not in SAFE]
    assert {m for m, _ in writes} >= {"PUT", "POST", "DELETE"}
    for method, path in writes:
        response = await client.request(
            method, concrete(path), json=connection_body(), headers=reader
        )
        body = assert_problem(response, 403, "forbidden")
        assert "'read'" in body["detail"] and "'admin'" in body["detail"], body
        assert "dashboard" in body["detail"]
    # Nothing changed: the connection is as it was, no job was queued by the refused calls.
    assert await raw_rows(database, "SELECT * FROM connection") == before
    assert await raw_rows(database, "SELECT id FROM employee") == []


async def test_read_token_may_use_every_read_route(
    client: httpx.AsyncClient, app: FastAPI, database: Database, connection: dict[str, Any]
) -> None:
    reader = await token(database, "read")
    reads = [(m, p) for m, p in admin_routes(app) if m == "GET"]
    assert {p for _, p in reads} >= {
        "/api/v1/connections",
        "/api/v1/connections/{organization_id}",
        "/api/v1/connections/{organization_id}/employees",
        "/api/v1/sync-history",
        "/api/v1/jobs",
    }
    for method, path in reads:
        response = await client.request(method, concrete(path), headers=reader)
        assert response.status_code not in (401, 403, 429), (path, response.text)
    listed = await client.get("/api/v1/connections", headers=reader)
    assert [c["organization_id"] for c in listed.json()] == [ORG]


async def test_admin_role_token_may_write(client: httpx.AsyncClient, database: Database) -> None:
    admin = await token(database, "admin")
    response = await client.put(f"/api/v1/connections/{ORG}", json=connection_body(), headers=admin)
    assert response.status_code == 201, response.text
    deleted = await client.delete(f"/api/v1/connections/{ORG}", headers=admin)
    assert deleted.status_code == 204


async def test_job_payloads_are_only_for_admin(
    client: httpx.AsyncClient, database: Database, admin_headers: dict[str, str]
) -> None:
    async with database.session_scope() as session:
        session.add(
            Job(
                kind="sync.appointment",
                args={"connection_id": 1, "appointment_id": "a-secret-appointment"},
                state="dead",
                last_error="ErrorInvalidUser: max@contoso.example",
            )
        )
    reader = await token(database, "read")

    as_reader = await client.get("/api/v1/jobs", headers=reader)
    assert as_reader.status_code == 200, as_reader.text
    (item,) = as_reader.json()["items"]
    assert item["kind"] == "sync.appointment" and item["state"] == "dead"
    assert item["args"] is None and item["last_error"] is None
    assert "a-secret-appointment" not in as_reader.text
    assert "max@contoso.example" not in as_reader.text

    as_admin = await client.get("/api/v1/jobs", headers=admin_headers)
    (full,) = as_admin.json()["items"]
    assert full["args"]["appointment_id"] == "a-secret-appointment"
    assert full["last_error"] == "ErrorInvalidUser: max@contoso.example"


async def test_bootstrap_token_is_admin(
    client: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await client.put(
        f"/api/v1/connections/{ORG}", json=connection_body(), headers=admin_headers
    )
    assert response.status_code == 201


@pytest.mark.parametrize("method", ["PUT", "POST", "DELETE", "PATCH"])
async def test_read_token_refusal_does_not_count_as_a_failed_authentication(
    client: httpx.AsyncClient, app: FastAPI, database: Database, method: str
) -> None:
    app.state.auth_failure_limiter = AuthFailureLimiter(max_failures=2)
    reader = await token(database, "read")
    for _ in range(4):
        response = await client.request(method, f"/api/v1/connections/{ORG}", headers=reader)
        assert response.status_code in (403, 405), response.text
    assert (await client.get("/api/v1/connections", headers=reader)).status_code == 200


def test_openapi_documents_roles(app: FastAPI) -> None:
    spec = app.openapi()
    for path, operations in spec["paths"].items():
        if not path.startswith("/api/v1/"):
            continue
        for method, operation in operations.items():
            assert "403" in operation["responses"], (method, path)
            assert "429" in operation["responses"], (method, path)
    jobs = spec["paths"]["/api/v1/jobs"]["get"]
    assert "`read`" in jobs["description"] and "null" in jobs["description"]
