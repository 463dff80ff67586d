"""Subscription use cases on the caller's session (never committing): what a change of an
employee's mailbox means for its subscription, the status an employee shows, the upkeep plan,
and the admin API's requests. Graph is never called here: the queued jobs do that."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.busy.keys import mailbox_key
from app.config import Settings, public_url_problem
from app.history.messages import message
from app.models import Connection, Subscription
from app.notifications import repository as repo
from app.notifications.schemas import SubscriptionStatus
from app.notifications.tasks import delete_job, renew_job, subscription_job
from app.queue.repository import NewJob, enqueue_many

NOTIFICATION_PATH = "/webhooks/graph/notifications"
LIFECYCLE_PATH = "/webhooks/graph/lifecycle"

PENDING, ACTIVE, FAILED, DISABLED = "pending", "active", "failed", "disabled"


def notification_url(settings: Settings) -> str:
    return f"{settings.public_url}{NOTIFICATION_PATH}"


def lifecycle_url(settings: Settings) -> str:
    return f"{settings.public_url}{LIFECYCLE_PATH}"


def disabled_reason(settings: Settings, mailbox: str) -> tuple[str, dict[str, Any]] | None:
    """Why subscriptions are off (history code and params), or None when they can run."""
    if not settings.public_url:
        return "subscription_disabled", {"mailbox": mailbox}
    problem = public_url_problem(settings.public_url)
    if problem is not None:
        return "subscription_url_invalid", {"mailbox": mailbox, "reason": problem}
    return None


async def _queued(session: AsyncSession, job: NewJob) -> bool:
    """Enqueue one job; False when the same job was already waiting."""
    return (await enqueue_many(session, [job]))[job.dedupe_key] is not None


# --- hooks for the employee mapping ---------------------------------------------------------


async def queue_ensure(session: AsyncSession, *, connection_id: int, mailbox: str) -> bool:
    """A mapping became valid: make sure its mailbox has a subscription (a no-op job when it
    has a live one). False when such a job was already waiting."""
    return await _queued(session, subscription_job(connection_id, mailbox_key(mailbox)))


async def release_mailbox(session: AsyncSession, *, connection_id: int, mailbox: str) -> bool:
    """A mapping to `mailbox` was removed or moved: when no employee of the connection maps to
    it any more, drop its subscription row and queue the delete in Graph. True if dropped."""
    if await repo.mailbox_employees(session, connection_id=connection_id, mailbox=mailbox):
        return False
    row = await repo.get(session, connection_id=connection_id, mailbox=mailbox)
    if row is None:
        return False
    await remove(session, row)
    return True


async def release_connection(session: AsyncSession, *, connection: Connection) -> int:
    """The connection is being deleted: queue the delete in Graph of each of its subscriptions,
    carrying the credentials (encrypted) it needs once the connection's row is gone. Called in
    the deleting transaction before the row goes, so either both happen or neither. Returns the
    deletes queued."""
    credentials = {
        "tenant": connection.tenant,
        "client_id": connection.client_id,
        "client_secret_encrypted": connection.client_secret_encrypted,
    }
    jobs = [
        delete_job(connection.id, row.mailbox, row.graph_subscription_id, credentials=credentials)
        for row in await repo.for_connection(session, connection_id=connection.id)
        if row.graph_subscription_id is not None
    ]
    queued = await enqueue_many(session, jobs)
    return sum(1 for job_id in queued.values() if job_id is not None)


# --- status -----------------------------------------------------------------------------------


def status_of(
    settings: Settings, row: Subscription | None, *, mailbox: str, locale: str
) -> SubscriptionStatus:
    """What the employee status shows about its mailbox's subscription."""
    off = disabled_reason(settings, mailbox)
    if off is not None:
        return SubscriptionStatus(
            state=DISABLED,
            expires_at=None,
            last_notification_at=row.last_notification_at if row else None,
            message=message(off[0], locale, off[1]),
        )
    if row is None or row.state == DISABLED:
        # Set up by the next ensure or upkeep job now that a public URL is configured.
        return SubscriptionStatus(
            state=PENDING, expires_at=None, last_notification_at=None, message=None
        )
    state = row.state if row.state in (PENDING, ACTIVE, FAILED) else PENDING
    return SubscriptionStatus(
        state=state,
        expires_at=row.expires_at,
        last_notification_at=row.last_notification_at,
        message=row.last_error_message,
    )


async def statuses(
    session: AsyncSession,
    settings: Settings,
    *,
    connection_id: int,
    mailboxes: list[str],
    locale: str,
) -> dict[str, SubscriptionStatus]:
    """The subscription status of each mailbox (lowercase keys)."""
    rows = await repo.for_mailboxes(session, connection_id=connection_id, mailboxes=mailboxes)
    return {
        mailbox_key(m): status_of(settings, rows.get(mailbox_key(m)), mailbox=m, locale=locale)
        for m in mailboxes
    }


# --- upkeep -----------------------------------------------------------------------------------


async def queue_upkeep(session: AsyncSession, settings: Settings, *, now: datetime) -> int:
    """Queue what the subscriptions need: renewal within `renew_before_minutes` of expiry,
    creation where none is live (pending, failed, disabled once a public URL is set).
    Returns the jobs queued."""
    renew_at = now + timedelta(minutes=settings.outlook.renew_before_minutes)
    jobs: list[NewJob] = []
    for row in await repo.all_rows(session):
        if row.state == ACTIVE and row.graph_subscription_id is not None:
            if row.expires_at is None or row.expires_at <= now:
                jobs.append(subscription_job(row.connection_id, row.mailbox, recreate=True))
            elif row.expires_at <= renew_at:
                jobs.append(renew_job(row.connection_id, row.mailbox))
        elif row.state != DISABLED or disabled_reason(settings, row.mailbox) is None:
            jobs.append(subscription_job(row.connection_id, row.mailbox))
    queued = await enqueue_many(session, jobs)
    return sum(1 for job_id in queued.values() if job_id is not None)


# --- admin requests ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Queued:
    """A subscription job asked for by an admin."""

    mailbox: str
    recreate: bool
    queued: bool  # False: the same job was already waiting
    subscription_id: int | None


async def queue_create(session: AsyncSession, *, connection_id: int, mailbox: str) -> Queued:
    """Create the mailbox's subscription, or replace the one on record."""
    row = await repo.get(session, connection_id=connection_id, mailbox=mailbox)
    recreate = row is not None and row.graph_subscription_id is not None
    job = subscription_job(connection_id, mailbox_key(mailbox), recreate=recreate)
    return Queued(
        mailbox=mailbox_key(mailbox),
        recreate=recreate,
        queued=await _queued(session, job),
        subscription_id=row.id if row is not None else None,
    )


async def queue_renew(session: AsyncSession, row: Subscription) -> bool:
    """Renew the subscription now; False when a renewal was already waiting."""
    return await _queued(session, renew_job(row.connection_id, row.mailbox))


async def remove(session: AsyncSession, row: Subscription) -> bool:
    """Drop the subscription's row and queue its delete in Graph; True when one was queued."""
    graph_id = row.graph_subscription_id
    connection_id, mailbox = row.connection_id, row.mailbox
    await repo.delete(session, row)
    if graph_id is None:
        return False
    await enqueue_many(session, [delete_job(connection_id, mailbox, graph_id)])
    return True
