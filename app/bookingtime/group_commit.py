"""Group commit: the webhook deliveries that arrive together are recorded together, in one
transaction, and each request is answered once that transaction has committed.

Why: most of a delivery's cost was the transaction around it, not its rows. SQLAlchemy's work per
statement and per commit is the same for one row as for fifty, and a SQLite process has one
connection, so every delivery queued for it. `bench/intake.py` holds the intake to a floor it
missed by a factor of several with one transaction per delivery (`docs/operations.md` has the
figures). Nothing here waits to fill a batch: a batch is whatever arrived while the previous one
was being written, so a lone delivery is written at once.

A batch that fails is written again one delivery at a time, each in its own transaction, so one
bad delivery (its connection deleted meanwhile) fails alone and a good one is never lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database

log = logging.getLogger(__name__)

Item = TypeVar("Item")
Result = TypeVar("Result")

# Bounds one transaction's statements and the time the write lock is held.
MAX_BATCH = 64

RecordBatch = Callable[[AsyncSession, Sequence[Item]], Awaitable[list[Result]]]


class GroupCommit(Generic[Item, Result]):
    """Runs `record_batch(session, items)` for the items handed to `record` concurrently, one
    transaction per batch; `record_batch` returns one result per item, in order."""

    def __init__(self, database: Database, record_batch: RecordBatch[Item, Result]) -> None:
        self._database = database
        self._record_batch = record_batch
        self._waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self._writer: asyncio.Task[None] | None = None

    async def record(self, item: Item) -> Result:
        """The item's result, once the transaction that recorded it has committed. A caller
        that is cancelled meanwhile does not withdraw the item: it is recorded all the same."""
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._waiting.append((item, future))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._write_all(), name="calbridge-group-commit")
        return await future

    async def _write_all(self) -> None:
        while self._waiting:
            batch = self._waiting[:MAX_BATCH]
            del self._waiting[:MAX_BATCH]
            try:
                results = await self._write([item for item, _ in batch])
            except Exception as exc:
                if len(batch) == 1:
                    _fail(batch[0][1], exc)
                    continue
                log.debug("a batch of %d failed; writing them one by one", len(batch))
                for item, future in batch:
                    try:
                        [result] = await self._write([item])
                    except Exception as exc:
                        _fail(future, exc)
                    else:
                        _resolve(future, result)
                continue
            for (_, future), result in zip(batch, results, strict=True):
                _resolve(future, result)

    async def _write(self, items: list[Item]) -> list[Result]:
        async with self._database.session_scope() as session:
            return await self._record_batch(session, items)


def _resolve(future: asyncio.Future[Result], result: Result) -> None:
    if not future.done():
        future.set_result(result)


def _fail(future: asyncio.Future[Result], exc: Exception) -> None:
    if not future.done():
        future.set_exception(exc)
