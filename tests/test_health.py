"""Health and readiness."""

from __future__ import annotations

import logging

import httpx
import pytest
from sqlalchemy import text

from app.db import Database
from tests.helpers import assert_problem


async def test_healthz(client: httpx.AsyncClient) -> None:
    response = await client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_at_head(client: httpx.AsyncClient) -> None:
    response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["status"] == "ready"


async def test_readyz_schema_behind_is_503(client: httpx.AsyncClient, database: Database) -> None:
    async with database.session_scope() as session:
        await session.execute(text("UPDATE alembic_version SET version_num = 'old'"))
    response = await client.get("/readyz")
    assert_problem(response, 503, "schema_outdated")
    assert "calbridge migrate" in response.json()["detail"]


def test_fastapi_opentelemetry_is_off_unless_asked_for() -> None:
    """Newer FastAPI instruments every request with OpenTelemetry; calbridge turns that off
    (its per-request provider lookup is pure cost without a provider) unless configured."""
    import inspect

    from fastapi import FastAPI

    from app.config import Settings
    from app.main import create_app

    if "telemetry" not in inspect.signature(FastAPI).parameters:
        pytest.skip("this FastAPI has no built-in telemetry to turn off")
    off = create_app(Settings(_env_file=None))  # type: ignore[call-arg]
    on = create_app(Settings(_env_file=None, opentelemetry=True))  # type: ignore[call-arg]
    assert (off._telemetry["tracing"], off._telemetry["metrics"], off._telemetry["logs"]) == (
        False,
        False,
        False,
    )
    assert on._telemetry["tracing"] is True


async def test_head_healthz_is_200_without_body(client: httpx.AsyncClient) -> None:
    response = await client.head("/healthz")
    assert response.status_code == 200
    assert response.content == b""
    # The GET answer's headers: a monitor sees the same type and length.
    get = await client.get("/healthz")
    assert response.headers["content-type"] == get.headers["content-type"]
    assert response.headers["content-length"] == str(len(get.content))


async def test_head_readyz_is_200_at_head_and_503_behind(
    client: httpx.AsyncClient, database: Database
) -> None:
    response = await client.head("/readyz")
    assert (response.status_code, response.content) == (200, b"")
    async with database.session_scope() as session:
        await session.execute(text("UPDATE alembic_version SET version_num = 'old'"))
    response = await client.head("/readyz")
    assert (response.status_code, response.content) == (503, b"")
    assert response.headers["content-type"].startswith("application/problem+json")


async def test_readyz_logs_no_alembic_lines(
    client: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    """Probes call /readyz every few seconds: Alembic's "Context impl …" lines each time would
    bury everything else in the log."""
    caplog.set_level(logging.DEBUG)
    for _ in range(2):
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.head("/readyz")).status_code == 200
    assert [r.getMessage() for r in caplog.records if r.name.startswith("alembic")] == []


async def test_alembic_still_logs_outside_readyz(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    """The quiet is for /readyz only: elsewhere (calbridge migrate) Alembic's lines stay."""
    from app.migrate import current_revision

    caplog.set_level(logging.INFO, logger="alembic")
    async with database.engine.connect() as connection:
        await current_revision(connection)
    assert any(r.name == "alembic.runtime.migration" for r in caplog.records)
