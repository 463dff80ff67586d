"""Fixtures for the bookingtime intake: a connection with a webhook secret and a sender."""

from __future__ import annotations

import httpx
import pytest

from app.crypto import SecretBox
from app.db import Database
from app.models import Connection
from tests.bookingtime.helpers import ORGANIZATION_ID, WEBHOOK_SECRET, Sender


@pytest.fixture
def sender(client: httpx.AsyncClient) -> Sender:
    return Sender(client)


@pytest.fixture
async def connection_id(database: Database, secret_box: SecretBox) -> int:
    async with database.session_scope() as session:
        connection = Connection(
            organization_id=ORGANIZATION_ID,
            tenant="contoso.onmicrosoft.com",
            client_id="00000000-0000-0000-0000-000000000001",
            client_secret_encrypted=secret_box.encrypt("x"),
            webhook_secret_encrypted=secret_box.encrypt(WEBHOOK_SECRET),
        )
        session.add(connection)
        await session.flush()
        return connection.id
