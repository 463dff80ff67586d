"""Health and readiness."""

from __future__ import annotations

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
