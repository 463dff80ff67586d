"""PostgreSQL: a worker hears at once when any process queues a job.

The `job` table's trigger notifies `JOBS_CHANNEL` when a job becomes pending, once per
transaction, with the table's schema as the payload (app/models/job.py). `JobListener` keeps a
connection of its own listening there and wakes the worker for its schema's notifications. Without
it, a worker in a process of its own would find another process's jobs only at its next poll.
The poll stays, for whatever a lost connection misses: the listener reconnects on its own, and
wakes the worker once listening again. SQLite has no such channel; calbridge runs its worker in
the API's process there, which wakes it directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import psycopg

from app.db import Database
from app.models.job import JOBS_CHANNEL

log = logging.getLogger(__name__)

# Reconnect pauses: doubling from the first to the last, back to the first once listening.
_FIRST_PAUSE_S = 1.0
_LAST_PAUSE_S = 30.0
# A quiet connection is checked this often, so a silently dropped one is noticed.
_CHECK_QUIET_S = 60.0


class JobListener:
    """LISTEN for queued jobs on a connection of its own (`application_name` is `name`, which
    an operator sees in `pg_stat_activity`) and call `on_pending` for each notification of this
    database's schema, and once each time listening starts."""

    def __init__(self, database: Database, on_pending: Callable[[], None], *, name: str) -> None:
        self._database = database
        self._on_pending = on_pending
        self.name = name[:63]  # PostgreSQL truncates longer names
        self.listening = asyncio.Event()

    async def run(self) -> None:
        """Listen until cancelled, connecting again after each failure."""
        pause = _FIRST_PAUSE_S
        while True:
            try:
                await self._listen()
            except Exception as exc:  # never ends the listener: the worker would not hear again
                if self.listening.is_set():
                    pause = _FIRST_PAUSE_S
                self.listening.clear()
                log.warning(
                    "%s: not listening for queued jobs (%s); again in %.0f s, polling meanwhile",
                    self.name,
                    str(exc).strip() or type(exc).__name__,
                    pause,
                    # A lost or refused connection says enough; anything else needs its trace.
                    exc_info=not isinstance(exc, OSError | psycopg.Error),
                )
            await asyncio.sleep(pause)
            pause = min(pause * 2, _LAST_PAUSE_S)

    async def _listen(self) -> None:
        engine = self._database.engine
        args, params = engine.dialect.create_connect_args(engine.url)
        connection: psycopg.AsyncConnection[Any] = await psycopg.AsyncConnection.connect(
            *args, **{**params, "application_name": self.name, "autocommit": True}
        )
        async with connection:
            cursor = await connection.execute("SELECT current_schema()")
            row = await cursor.fetchone()
            schema = row[0] if row else None
            await connection.execute(f"LISTEN {JOBS_CHANNEL}")
            if not self.listening.is_set():
                log.info("%s: listening for queued jobs (channel %s)", self.name, JOBS_CHANNEL)
            self.listening.set()
            self._on_pending()  # jobs queued while nobody listened
            while True:
                async for notify in connection.notifies(timeout=_CHECK_QUIET_S):
                    if notify.payload == schema:
                        self._on_pending()
                await connection.execute("SELECT 1")
