"""The composition root of background work: every job kind of calbridge and its handler."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from functools import partial
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.connections.checks import CHECK_MAILBOX_JOB, check_mailbox_job
from app.connections.secrets import (
    SECRET_EXPIRY_INTERVAL_SECONDS,
    SECRET_EXPIRY_JOB,
    check_secret_expiry,
)
from app.crypto import SecretBox
from app.db import Database
from app.models import InboxEvent
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
    """Periodic: remove finished jobs and inbox rows past their retention."""
    await prune_impl(ctx.database, ctx.settings, now=ctx.clock())


async def prune_impl(database: Database, settings: Settings, *, now: datetime) -> tuple[int, int]:
    """Delete `done` jobs and inbox events older than the retention; (jobs, inbox rows)."""
    retention = settings.retention
    jobs_before = now - timedelta(days=retention.done_jobs_days)
    inbox_before = now - timedelta(days=retention.inbox_days)
    jobs = inbox = 0
    while True:
        async with database.session_scope() as session:
            deleted = await prune_done_jobs(session, finished_before=jobs_before, limit=PRUNE_BATCH)
        jobs += deleted
        if deleted < PRUNE_BATCH:
            break
    while True:
        async with database.session_scope() as session:
            deleted = await _prune_inbox(session, received_before=inbox_before, limit=PRUNE_BATCH)
        inbox += deleted
        if deleted < PRUNE_BATCH:
            break
    log.info("pruned %d done jobs and %d inbox events", jobs, inbox)
    return jobs, inbox


async def _prune_inbox(session: AsyncSession, *, received_before: datetime, limit: int) -> int:
    doomed = select(InboxEvent.id).where(InboxEvent.received_at < received_before).limit(limit)
    statement = (
        delete(InboxEvent)
        .where(InboxEvent.id.in_(doomed.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    return result.rowcount
