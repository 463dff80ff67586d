"""Fixtures of the targeted hostile-input tests: a bookingtime connection, what is stored, and the
app behind a real uvicorn server configured as `calbridge serve` runs it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from fastapi import FastAPI
from sqlalchemy import func, select

from app.crypto import SecretBox
from app.db import Database
from app.models import AdminToken, Appointment, Connection, Employee, InboxEvent, Job
from tests.bookingtime.helpers import ORGANIZATION_ID, WEBHOOK_SECRET
from tests.servers import serve_app


@pytest.fixture
async def connection_id(database: Database, secret_box: SecretBox) -> int:
    """The bookingtime organisation of tests.bookingtime.helpers, with its webhook secret."""
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


MODELS = (Connection, Employee, AdminToken, InboxEvent, Appointment, Job)


async def row_counts(database: Database) -> dict[str, int]:
    """Rows of every table a hostile request could write to, by table."""
    async with database.session() as session:
        return {
            model.__tablename__: await session.scalar(select(func.count()).select_from(model)) or 0
            for model in MODELS
        }


@dataclass(frozen=True)
class Served:
    host: str
    port: int

    async def exchange(self, request: bytes, *, within: float = 10.0) -> bytes:
        """Send raw bytes on a new connection; everything the server answers until it closes
        the connection or goes quiet for a moment (keep-alive)."""
        reader, writer = await asyncio.open_connection(self.host, self.port)
        try:
            writer.write(request)
            await writer.drain()
            answer = b""
            async with asyncio.timeout(within):
                while True:
                    try:
                        chunk = await asyncio.wait_for(reader.read(65536), 1.0 if answer else None)
                    except TimeoutError:
                        break
                    if not chunk:
                        break
                    answer += chunk
            return answer
        finally:
            writer.close()
            try:
                await writer.wait_closed()
            except ConnectionError:
                pass


@pytest.fixture
async def served(app: FastAPI) -> AsyncIterator[Served]:
    """The app (its lifespan already running) behind uvicorn on loopback, with the server
    options of `calbridge serve` (app/cli.py): uvicorn's defaults, proxy headers on."""
    async with serve_app(app, lifespan="off", proxy_headers=True) as port:
        yield Served("127.0.0.1", port)
