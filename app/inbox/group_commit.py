"""Group commit: concurrent requests share one short transaction (writes, and reads too).

Each request hands its item to one writer task and awaits the result; the writer lets the event
loop turn once, takes whatever has queued up by then (up to `max_batch`), writes it with one batch
function in one transaction, commits and answers every waiter. A request is answered only after
its transaction committed, so nothing acknowledged is ever lost. If a batch fails, its items are
retried one by one, so one bad item fails alone.

The batch function is either async over a session (`write`) or a plain-SQL unit of work
(`unit`, run by `Database.run_unit`: on SQLite the whole batch as synchronous driver calls).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from sqlalchemy.ext.asyncio import AsyncSession

from app.db import Database, Statements

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

BatchWriter = Callable[[AsyncSession, Sequence[T]], Awaitable[list[R]]]
BatchUnit = Callable[[Statements, Sequence[T]], list[R]]


class GroupCommitClosed(RuntimeError):
    """The committer is shutting down and takes no new items."""


class GroupCommitter(Generic[T, R]):
    """Runs `write(session, items) -> results`, or `unit(statements, items) -> results`, for
    batches of concurrently submitted items."""

    def __init__(
        self,
        database: Database,
        write: BatchWriter[T, R] | None = None,
        *,
        unit: BatchUnit[T, R] | None = None,
        max_batch: int = 128,
    ) -> None:
        if (write is None) == (unit is None):
            raise TypeError("give either write or unit")
        self._database = database
        self._write = write
        self._unit = unit
        self._max_batch = max_batch
        self._queue: asyncio.Queue[tuple[T, asyncio.Future[R]]] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._closed = False

    async def submit(self, item: T) -> R:
        """Write `item` in the next batch; returns once that batch has committed."""
        if self._closed:
            raise GroupCommitClosed("calbridge is shutting down")
        if self._task is None:
            # A context of its own: its log lines serve every batch, not the request that
            # happened to start it (whose request id and organisation would stick to them).
            self._task = asyncio.create_task(
                self._run(), name="group-commit", context=contextvars.Context()
            )
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait((item, future))
        # Cancelling the caller cancels only this future: the item stays queued and is still
        # committed with its batch (a redelivery is then a duplicate), and the writer skips
        # settling a future that is already done.
        return await future

    async def close(self) -> None:
        """Stop taking items, write what is queued, stop the writer."""
        self._closed = True
        if self._task is None:
            return
        await self._queue.join()
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        while True:
            batch = [await self._queue.get()]
            # One turn of the event loop before the batch is closed: requests already under way
            # (their bodies read, being verified) join this batch instead of the next one. It
            # costs microseconds, and under load it makes batches larger, so each commit's fixed
            # cost (session, BEGIN, COMMIT, one round trip per statement) is shared more widely.
            await asyncio.sleep(0)
            while len(batch) < self._max_batch and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._commit(batch)
            finally:
                for _ in batch:
                    self._queue.task_done()

    async def _commit(self, batch: list[tuple[T, asyncio.Future[R]]]) -> None:
        items = [item for item, _ in batch]
        try:
            results = await self._run_batch(items)
        except Exception as exc:
            if len(batch) == 1:
                _settle(batch[0][1], exc=exc)
                return
            log.warning(
                "group commit of %d items failed (%s); writing them one by one",
                len(batch),
                type(exc).__name__,
            )
            for entry in batch:
                await self._commit([entry])
            return
        for (_, future), result in zip(batch, results, strict=True):
            _settle(future, result=result)

    async def _run_batch(self, items: list[T]) -> list[R]:
        if self._unit is not None:
            unit = self._unit
            return await self._database.run_unit(lambda statements: unit(statements, items))
        assert self._write is not None
        async with self._database.session_scope() as session:
            return await self._write(session, items)


def _settle(
    future: asyncio.Future[R], *, result: R | None = None, exc: BaseException | None = None
) -> None:
    if future.done():
        return
    if exc is not None:
        future.set_exception(exc)
    else:
        future.set_result(result)  # type: ignore[arg-type]
