"""What the subscription jobs store about their outcome: a subscription created, renewed,
gone, failed or disabled, on its row and in the sync history. On the job's session between
two Graph calls; never commits."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.busy.tasks import mailbox_sync_job
from app.credentials import secrets as client_secrets
from app.graph.errors import GraphError
from app.graph.schemas import Subscription as GraphSubscription
from app.history import repository as history
from app.history.messages import error_code, message, render
from app.models import Connection, Subscription, SyncRecord
from app.notifications import repository as repo
from app.notifications.service import ACTIVE, DISABLED, FAILED, PENDING
from app.notifications.tasks import subscription_job
from app.queue.repository import enqueue_many


@dataclass(frozen=True)
class Target:
    """The mailbox a subscription job works on, and whose history hears of it: the employees
    mapped to the mailbox, in the connection's language, under the job's id."""

    connection: Connection
    mailbox: str
    employees: list[str]
    job_id: int | None

    async def add_records(
        self,
        session: AsyncSession,
        *,
        status: str,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        graph_request_id: str | None = None,
    ) -> None:
        """One sync-history row per employee of the mailbox (one without an employee if none),
        so each employee's history shows what happened to its subscription."""
        employees: list[str | None] = [*self.employees] or [None]
        for employee in employees:
            history.add_record(
                session,
                SyncRecord(
                    connection_id=self.connection.id,
                    booking_resource_id=employee,
                    mailbox=self.mailbox,
                    appointment_id=None,
                    job_id=self.job_id,
                    action="subscription",
                    status=status,
                    code=code,
                    message=message,
                    details=details,
                    graph_request_id=graph_request_id,
                ),
            )
        await session.flush()


def _time(value: datetime | None) -> str:
    return "?" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


async def disable(
    session: AsyncSession,
    row: Subscription,
    target: Target,
    reason: tuple[str, dict[str, Any]],
    *,
    now: datetime,
) -> None:
    """Subscriptions are off (no usable public URL): say so once."""
    code, params = reason
    text = message(code, target.connection.locale, params)
    if row.state == DISABLED and row.last_error_code == code:
        return  # said once is enough
    row.state = DISABLED
    row.last_error_at = now
    row.last_error_code = code
    row.last_error_message = text
    await target.add_records(session, status="skipped", code=code, message=text, details=params)


async def store_created(
    session: AsyncSession,
    target: Target,
    *,
    created: GraphSubscription,
    request_id: str | None,
    user_id: str | None,
    client_state_encrypted: str,
    recreate: bool,
) -> bool:
    """Keep the subscription Graph created and start the mailbox's delta; False when the
    mapping went away while Graph answered (the subscription is then an orphan)."""
    connection_id, mailbox = target.connection.id, target.mailbox
    stored = await repo.get(session, connection_id=connection_id, mailbox=mailbox)
    employees = await repo.mailbox_employees(session, connection_id=connection_id, mailbox=mailbox)
    if stored is None or not employees:
        return False
    stored.graph_subscription_id = created.id
    stored.graph_user_id = user_id
    stored.client_state_encrypted = client_state_encrypted
    stored.state = ACTIVE
    stored.expires_at = created.expiration_date_time
    # A new subscription: no PATCH or reauthorize of it yet (§1.5's 10 minutes).
    stored.last_renewed_at = stored.last_reauthorized_at = None
    stored.last_error_at = stored.last_error_code = stored.last_error_message = None
    params = {"mailbox": mailbox, "expires_at": _time(stored.expires_at)}
    # The employees mapped now, not when the job started: Graph's answer took a while.
    await replace(target, employees=employees).add_records(
        session,
        status="ok",
        code="subscription_created",
        message=message("subscription_created", target.connection.locale, params),
        details={**params, "subscription_id": created.id, "recreated": recreate},
        graph_request_id=request_id,
    )
    # A first subscription starts the mailbox's delta; a recreated one starts over, since what
    # changed while there was none was never notified.
    await enqueue_many(session, [mailbox_sync_job(connection_id, mailbox, full=recreate)])
    return True


async def store_renewed(
    session: AsyncSession,
    target: Target,
    *,
    graph_subscription_id: str,
    reauthorized: bool,
    expires_at: datetime | None,
    request_id: str | None,
    now: datetime,
) -> None:
    """Note a renewal (new expiry) or reauthorization, unless the subscription was replaced."""
    row = await repo.get(session, connection_id=target.connection.id, mailbox=target.mailbox)
    if row is None or row.graph_subscription_id != graph_subscription_id:
        return
    if reauthorized:
        row.last_reauthorized_at = now
        code = "subscription_reauthorized"
    else:
        row.expires_at = expires_at
        row.last_renewed_at = now
        code = "subscription_renewed"
    row.last_error_at = row.last_error_code = row.last_error_message = None
    params = {"mailbox": target.mailbox, "expires_at": _time(row.expires_at)}
    await target.add_records(
        session,
        status="ok",
        code=code,
        message=message(code, target.connection.locale, params),
        details=params,
        graph_request_id=request_id,
    )


async def mark_gone(session: AsyncSession, target: Target, *, row_id: int) -> None:
    """Graph answered 404: the subscription expired or was removed. Recreate it."""
    row = await repo.get_by_id(session, row_id)
    if row is None:
        return
    row.state = PENDING
    row.graph_subscription_id = None
    row.client_state_encrypted = None
    mailbox = target.mailbox
    params = {"mailbox": mailbox}
    await target.add_records(
        session,
        status="ok",
        code="subscription_gone",
        message=message("subscription_gone", target.connection.locale, params),
        details=params,
    )
    await enqueue_many(session, [subscription_job(row.connection_id, mailbox, recreate=True)])


async def record_failure(
    session: AsyncSession,
    target: Target,
    *,
    row_id: int,
    error: GraphError,
    now: datetime,
    keep_state: bool = False,
    retryable: bool = False,
) -> str:
    """Show a failed Graph call on the row and in the history; its history code."""
    connection, mailbox = target.connection, target.mailbox
    code, params = error_code(
        error, mailbox=mailbox, tenant=connection.tenant, client_id=connection.client_id
    )
    # The record's code is the failure's; its text says the subscription failed, in one language.
    details = {**params, "message_code": "subscription_failed", "reason_code": code}
    text = message("subscription_failed", connection.locale, details)
    await client_secrets.mark_rejected(session, connection_id=connection.id, code=code, now=now)
    row = await repo.get_by_id(session, row_id)
    if row is None:
        return code
    if not keep_state:
        # A retryable failure stays pending (the queue tries again); a permanent one waits for
        # the admin (or the next upkeep) as failed.
        row.state = FAILED if error.permanent and not retryable else PENDING
    row.last_error_at = now
    row.last_error_code = code
    row.last_error_message = text
    await target.add_records(
        session,
        status="failed",
        code=code,
        message=text,
        details={**details, "graph_code": error.code, "status": error.status},
        graph_request_id=error.request_id,
    )
    return code


def last_error_text(row: Subscription, locale: str, **known: str) -> str | None:
    """The row's last error rendered anew in `locale` from its code, its mailbox and the params
    `known` (the connection's tenant and client_id); None when they are not enough."""
    code = row.last_error_code
    if code is None:
        return None
    params = {**known, "mailbox": row.mailbox}
    if code.startswith("subscription_"):  # subscriptions off: the code is the message's
        return render(code, locale, params)
    return render("subscription_failed", locale, {**params, "reason_code": code})
