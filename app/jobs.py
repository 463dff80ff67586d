"""The composition root of background work: every job kind of calbridge and its handler."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.orm import InstrumentedAttribute

from app.config import Settings
from app.connections.checks import CHECK_MAILBOX_JOB, check_mailbox_job
from app.connections.secrets import (
    SECRET_EXPIRY_INTERVAL_SECONDS,
    SECRET_EXPIRY_JOB,
    check_secret_expiry,
)
from app.crypto import SecretBox
from app.db import Database
from app.models import InboxEvent, SyncRecord
from app.outlook import subscriptions
from app.outlook.delta import sweep_mailboxes, sync_mailbox
from app.outlook.jobs import MAILBOX_SWEEP, SYNC_MAILBOX
from app.queue.registry import JobContext, JobRegistry
from app.queue.repository import prune_done_jobs
from app.sync.graph_clients import GraphClients
from app.sync.tasks import RESYNC, SYNC_APPOINTMENT, resync, sync_appointment

log = logging.getLogger(__name__)

PRUNE_KIND = "maintenance.prune"
# Rows deleted per transaction, so pruning a large backlog never holds a long write lock.
PRUNE_BATCH = 5000


def build_registry(
    settings: Settings, *, graph: GraphClients, secret_box: SecretBox
) -> JobRegistry:
    """The registry every worker of this app runs, its handlers bound to the process's one set
    of Graph clients (one HTTP pool, one token cache per connection) and its secret box."""
    registry = JobRegistry()
    registry.register(PRUNE_KIND, prune, every_seconds=settings.retention.prune_interval_seconds)
    registry.register(
        SYNC_APPOINTMENT, partial(sync_appointment, graph=graph, secret_box=secret_box)
    )
    registry.register(RESYNC, resync)
    registry.register(
        CHECK_MAILBOX_JOB, partial(check_mailbox_job, graph=graph, secret_box=secret_box)
    )
    for kind, handler in (
        (subscriptions.SUBSCRIPTION_ENSURE, subscriptions.ensure_subscription),
        (subscriptions.SUBSCRIPTION_RENEW, subscriptions.renew_subscription),
        (subscriptions.SUBSCRIPTION_DELETE, subscriptions.delete_subscription),
    ):
        registry.register(kind, partial(handler, graph=graph, secret_box=secret_box))
    registry.register(
        subscriptions.SUBSCRIPTION_UPKEEP,
        partial(subscriptions.subscription_upkeep, graph=graph, secret_box=secret_box),
        every_seconds=settings.outlook.upkeep_interval_seconds,
    )
    registry.register(
        SECRET_EXPIRY_JOB, check_secret_expiry, every_seconds=SECRET_EXPIRY_INTERVAL_SECONDS
    )
    registry.register(SYNC_MAILBOX, partial(sync_mailbox, graph=graph, secret_box=secret_box))
    registry.register(
        MAILBOX_SWEEP, sweep_mailboxes, every_seconds=settings.outlook.safety_delta_seconds
    )
    return registry


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
    jobs = 0
    while True:
        async with database.session_scope() as session:
            deleted = await prune_done_jobs(session, finished_before=jobs_before, limit=PRUNE_BATCH)
        jobs += deleted
        if deleted < PRUNE_BATCH:
            break
    inbox = await _prune_oldest(
        database, InboxEvent, InboxEvent.received_at, now - timedelta(days=retention.inbox_days)
    )
    history = await _prune_oldest(
        database, SyncRecord, SyncRecord.created_at, now - timedelta(days=retention.history_days)
    )
    log.info("pruned %d done jobs, %d inbox events, %d history records", jobs, inbox, history)
    return jobs, inbox, history


async def _prune_oldest(
    database: Database, model: Any, stamp: InstrumentedAttribute[datetime], before: datetime
) -> int:
    """Delete the rows of an append-only table stamped before `before`, oldest first, in
    batches. Ids grow with time, so each batch is found from the lowest id on, and a table whose
    oldest row is young enough is not scanned at all."""
    pruned = 0
    oldest = select(stamp).order_by(model.id).limit(1)
    while True:
        async with database.session_scope() as session:
            first = await session.scalar(oldest)
            if first is None or first >= before:
                return pruned
            doomed = select(model.id).where(stamp < before).order_by(model.id).limit(PRUNE_BATCH)
            statement = (
                delete(model)
                .where(model.id.in_(doomed.scalar_subquery()))
                .execution_options(synchronize_session=False)
            )
            deleted = cast(CursorResult[Any], await session.execute(statement)).rowcount
        pruned += deleted
        if deleted < PRUNE_BATCH:
            return pruned
