"""`maintenance.prune`: remove done jobs, inbox events and sync history past their retention."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import Database
from app.maintenance import repository
from app.queue.registry import JobContext
from app.queue.repository import prune_done_jobs

log = logging.getLogger(__name__)

PRUNE_KIND = "maintenance.prune"
# Rows deleted per transaction, so pruning a large backlog never holds a long write lock.
PRUNE_BATCH = 5000


async def prune(ctx: JobContext) -> None:
    """Periodic: remove finished jobs, inbox rows and history records past their retention."""
    await prune_impl(ctx.database, ctx.settings, now=ctx.clock())


async def prune_impl(
    database: Database, settings: Settings, *, now: datetime
) -> tuple[int, int, int]:
    """Delete `done` jobs, inbox events and sync history records older than their retention;
    (jobs, inbox rows, history records)."""
    retention = settings.retention
    jobs_before = now - timedelta(days=retention.done_jobs_days)
    inbox_before = now - timedelta(days=retention.inbox_days)
    history_before = now - timedelta(days=retention.history_days)
    jobs = await _in_batches(
        database,
        lambda session: prune_done_jobs(session, finished_before=jobs_before, limit=PRUNE_BATCH),
    )
    inbox = await _in_batches(
        database,
        lambda session: repository.prune_inbox_events(
            session, received_before=inbox_before, limit=PRUNE_BATCH
        ),
    )
    history = await _in_batches(
        database,
        lambda session: repository.prune_sync_records(
            session, created_before=history_before, limit=PRUNE_BATCH
        ),
    )
    log.info("pruned %d done jobs, %d inbox events, %d history records", jobs, inbox, history)
    return jobs, inbox, history


async def _in_batches(
    database: Database, prune_batch: Callable[[AsyncSession], Awaitable[int]]
) -> int:
    """Run `prune_batch` one transaction at a time until a batch comes back short."""
    pruned = 0
    while True:
        async with database.session_scope() as session:
            deleted = await prune_batch(session)
        pruned += deleted
        if deleted < PRUNE_BATCH:
            return pruned
