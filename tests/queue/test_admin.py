"""`/api/v1/jobs`: list with filters and cursor pagination, retry of dead and failed jobs."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from fastapi import FastAPI

from app.admin.jobs import router
from app.config import Settings
from app.db import Database
from app.http.problems import install_problem_handlers
from app.models.base import utcnow
from app.queue.manager import JobManager
from app.queue.repository import enqueue
from tests.helpers import assert_problem
from tests.queue.conftest import Clock, job


@pytest.fixture
async def api(settings: Settings, database: Database) -> AsyncIterator[httpx.AsyncClient]:
    # The jobs router alone, wired like create_app() wires the admin API.
    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    app.state.settings = settings
    app.state.database = database
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calbridge.test") as client:
        yield client


async def add(database: Database, kind: str = "test.job", **kwargs: object) -> int:
    async with database.session_scope() as session:
        job_id = await enqueue(session, kind, **kwargs)  # type: ignore[arg-type]
    assert job_id is not None
    return job_id


async def run_to(manager: JobManager, state: str, error: str = "boom") -> int:
    """Claim the next job of `test.job` and end it in `state`."""
    clock = Clock()
    claimed = await manager.claim(worker_id="w", kinds=["test.job"], now=clock())
    assert claimed is not None
    if state == "dead":
        assert await manager.mark_dead(claimed, error=error, now=clock())
    elif state == "failed":
        assert await manager.fail(claimed, error=error, now=clock())
    elif state == "done":
        assert await manager.complete(claimed, now=clock())
    return claimed.id


async def test_requires_admin_token(api: httpx.AsyncClient) -> None:
    for response in (
        await api.get("/api/v1/jobs"),
        await api.post("/api/v1/jobs/1/retry"),
        await api.get("/api/v1/jobs", headers={"Authorization": "Bearer wrong"}),
    ):
        assert_problem(response, 401, "unauthorized")


async def test_list_newest_first_with_filters_and_pages(
    api: httpx.AsyncClient, admin_headers: dict[str, str], database: Database, manager: JobManager
) -> None:
    dead = await add(database)
    await run_to(manager, "dead", error="ValueError: boom")
    others = [await add(database, "sync.appointment", dedupe_key=f"a:{n}") for n in range(4)]

    response = await api.get("/api/v1/jobs", headers=admin_headers)
    assert response.status_code == 200
    body = response.json()
    assert [item["id"] for item in body["items"]] == [*reversed(others), dead]
    assert body["next_cursor"] is None
    item = body["items"][-1]
    assert item["state"] == "dead" and item["last_error"] == "ValueError: boom"
    assert set(item) == {
        "id", "kind", "args", "state", "run_at", "attempts", "max_attempts", "dedupe_key",
        "serial_key", "mailbox", "last_error", "created_at", "started_at", "finished_at",
    }  # fmt: skip

    dead_only = await api.get("/api/v1/jobs", params={"state": "dead"}, headers=admin_headers)
    assert [i["id"] for i in dead_only.json()["items"]] == [dead]
    by_kind = await api.get(
        "/api/v1/jobs",
        params={"kind": "sync.appointment", "state": "pending"},
        headers=admin_headers,
    )
    assert [i["id"] for i in by_kind.json()["items"]] == list(reversed(others))

    seen: list[int] = []
    cursor = None
    for _ in range(5):
        params: dict[str, str | int] = {"limit": 2}
        if cursor:
            params["cursor"] = cursor
        page = (await api.get("/api/v1/jobs", params=params, headers=admin_headers)).json()
        seen += [i["id"] for i in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == [*reversed(others), dead]


@pytest.mark.parametrize(
    ("params", "status", "code"),
    [
        ({"state": "exploded"}, 422, "validation_failed"),
        ({"limit": 0}, 422, "validation_failed"),
        ({"cursor": "not-a-cursor"}, 400, "invalid_cursor"),
    ],
)
async def test_list_rejects_bad_parameters(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    params: dict[str, str | int],
    status: int,
    code: str,
) -> None:
    response = await api.get("/api/v1/jobs", params=params, headers=admin_headers)
    assert_problem(response, status, code)


@pytest.mark.parametrize("state", ["dead", "failed"])
async def test_retry_dead_or_failed_job(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    manager: JobManager,
    state: str,
) -> None:
    await add(database, max_attempts=1)
    job_id = await run_to(manager, state)
    before = utcnow()
    response = await api.post(f"/api/v1/jobs/{job_id}/retry", headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json()["state"] == "pending"
    row = await job(database, job_id)
    assert (row.state, row.attempts, row.finished_at, row.worker_id) == ("pending", 0, None, None)
    assert before <= row.run_at <= utcnow()
    # Due now: a worker picks it up again.
    again = await manager.claim(
        worker_id="w2", kinds=["test.job"], now=utcnow() + timedelta(seconds=1)
    )
    assert again is not None and again.id == job_id and again.attempts == 1


async def test_retry_unknown_job_is_404(
    api: httpx.AsyncClient, admin_headers: dict[str, str]
) -> None:
    response = await api.post("/api/v1/jobs/999/retry", headers=admin_headers)
    assert_problem(response, 404, "job_not_found")


@pytest.mark.parametrize("state", ["pending", "running", "done"])
async def test_retry_other_states_is_409(
    api: httpx.AsyncClient,
    admin_headers: dict[str, str],
    database: Database,
    manager: JobManager,
    state: str,
) -> None:
    job_id = await add(database)
    if state != "pending":
        await run_to(manager, state)
    response = await api.post(f"/api/v1/jobs/{job_id}/retry", headers=admin_headers)
    assert_problem(response, 409, "job_not_retriable")
    assert (await job(database, job_id)).state == state


async def test_retry_with_pending_twin_is_409(
    api: httpx.AsyncClient, admin_headers: dict[str, str], database: Database, manager: JobManager
) -> None:
    await add(database, dedupe_key="appointment:7")
    dead = await run_to(manager, "dead")
    twin = await add(database, dedupe_key="appointment:7")
    response = await api.post(f"/api/v1/jobs/{dead}/retry", headers=admin_headers)
    assert response.status_code == 409
    body = response.json()
    assert (body["code"], body["pending_job_id"]) == ("job_duplicate_pending", twin)
    assert (await job(database, dead)).state == "dead"


async def test_openapi_documents_the_endpoints(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    listing = spec["paths"]["/api/v1/jobs"]["get"]
    retry = spec["paths"]["/api/v1/jobs/{job_id}/retry"]["post"]
    assert listing["summary"] and retry["summary"]
    assert {"401", "422"} <= set(listing["responses"])
    assert {"200", "401", "404", "409"} <= set(retry["responses"])
    conflict = retry["responses"]["409"]["content"]["application/problem+json"]["examples"]
    assert set(conflict) == {"job_not_retriable", "job_duplicate_pending"}
    assert spec["components"]["schemas"]["JobOut"]["examples"]


async def test_mounted_in_the_app(
    client: httpx.AsyncClient, admin_headers: dict[str, str], database: Database
) -> None:
    job_id = await add(database, "sync.appointment", dedupe_key="appointment:1:a-1")
    response = await client.get(
        "/api/v1/jobs", params={"kind": "sync.appointment"}, headers=admin_headers
    )
    assert response.status_code == 200
    assert [item["id"] for item in response.json()["items"]] == [job_id]
    assert (await client.get("/api/v1/jobs")).status_code == 401


async def test_secrets_in_job_arguments_are_masked(
    api: httpx.AsyncClient, admin_headers: dict[str, str], database: Database
) -> None:
    """A subscription delete that outlives its connection carries the encrypted client secret:
    the admin sees the job, never the ciphertext."""
    await add(
        database,
        "subscription.delete",
        args={
            "subscription_id": "sub-1",
            "credentials": {
                "tenant": "contoso.example",
                "client_id": "app-1",
                "client_secret_encrypted": "gAAAAABciphertext",
            },
            "items": [{"webhook_secret": "whsec_x", "mailbox": "max@contoso.example"}],
        },
    )
    response = await api.get("/api/v1/jobs", headers=admin_headers)
    [item] = response.json()["items"]
    assert item["args"] == {
        "subscription_id": "sub-1",
        "credentials": {
            "tenant": "contoso.example",
            "client_id": "app-1",
            "client_secret_encrypted": "[redacted]",
        },
        "items": [{"webhook_secret": "[redacted]", "mailbox": "max@contoso.example"}],
    }
    assert "gAAAAABciphertext" not in response.text
