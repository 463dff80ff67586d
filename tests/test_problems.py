"""Errors are problem documents; an unreachable database is a retryable 503, never a 500."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest

from app.config import Settings
from app.crypto import SecretBox
from app.db import Database
from app.http.limits import MAX_HEADER_COUNT
from app.main import create_app
from tests.conftest import ADMIN_TOKEN, SECRET_KEY
from tests.helpers import assert_problem


@pytest.fixture
async def unreachable_client() -> AsyncIterator[httpx.AsyncClient]:
    url = "postgresql+psycopg://postgres@127.0.0.1:1/none?connect_timeout=1"
    settings = Settings(
        database_url=url, secret_key=SECRET_KEY, admin_token=ADMIN_TOKEN, _env_file=None
    )  # type: ignore[call-arg]
    database = Database(url, pool_pre_ping=False)
    app = create_app(settings, database=database, secret_box=SecretBox([SECRET_KEY.encode()]))
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://calbridge.test") as c:
            yield c
    await database.dispose()


async def test_webhook_with_the_database_down_is_503_with_retry_after(
    unreachable_client: httpx.AsyncClient,
) -> None:
    response = await unreachable_client.post(
        "/webhooks/bookingtime/f6AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        content=b"{}",
        headers={
            "webhook-id": "msg_1",
            "webhook-timestamp": "1",
            "webhook-signature": "v1,x",
            "X-Request-ID": "rid-down",
        },
    )
    assert_problem(response, 503, "database_unavailable")
    assert response.headers.get_list("x-request-id") == ["rid-down"]
    assert response.headers["retry-after"] == "5"


async def test_admin_api_with_the_database_down_is_503(
    unreachable_client: httpx.AsyncClient,
) -> None:
    response = await unreachable_client.get(
        "/api/v1/connections", headers={"Authorization": "Bearer not-the-bootstrap-token"}
    )
    assert_problem(response, 503, "database_unavailable")


async def test_readyz_with_the_database_down_is_503(unreachable_client: httpx.AsyncClient) -> None:
    response = await unreachable_client.get("/readyz")
    assert_problem(response, 503, "database_unavailable")


async def test_a_header_flood_on_a_webhook_is_431_with_a_request_id(
    unreachable_client: httpx.AsyncClient,
) -> None:
    headers = [(f"x-flood-{i}", "1") for i in range(MAX_HEADER_COUNT + 1)]
    response = await unreachable_client.post(
        "/webhooks/bookingtime/f6AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", content=b"{}", headers=headers
    )
    assert_problem(response, 431, "headers_too_large")
    assert response.headers["connection"] == "close"
    assert len(response.headers.get_list("x-request-id")) == 1
