"""Helpers for admin API tests: request bodies and reading raw rows."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from sqlalchemy import text

from app.db import Database

ORG = "f6AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
TENANT_ID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
CLIENT_ID = "6731de76-14a6-49ae-97bc-6eba6914391e"
CLIENT_SECRET = "Xy48Q~client-secret-value-0123456789abcd"


def connection_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "tenant": TENANT_ID,
        "client_id": CLIENT_ID,
        "client_secret": CLIENT_SECRET,
    }
    body.update(overrides)
    return {key: value for key, value in body.items() if value is not ...}


async def raw_rows(database: Database, sql: str, **params: Any) -> list[dict[str, Any]]:
    """Rows exactly as stored, bypassing the ORM."""
    async with database.session() as session:
        result = await session.execute(text(sql), params)
        return [dict(row) for row in result.mappings()]


@pytest.fixture
async def connection(client: httpx.AsyncClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    """A connection created through the API (the PUT response, generated secret included)."""
    response = await client.put(
        f"/api/v1/connections/{ORG}", json=connection_body(), headers=admin_headers
    )
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created
