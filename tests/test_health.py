"""Health and readiness."""

from __future__ import annotations

import httpx
from sqlalchemy import text

from app.db import Database


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
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["code"] == "schema_outdated"
    assert "calbridge migrate" in response.json()["detail"]
