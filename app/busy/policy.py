"""What a delta run writes besides busy blocks: a person's change to one of calbridge's events
handled by the connection's `outlook_changes` policy, and a run that failed for good recorded
for every employee of the mailbox. Takes the run's session; never commits."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.busy import repository as repo
from app.busy.judging import Conflict
from app.credentials import secrets
from app.graph.errors import GraphError
from app.history import repository as history
from app.history.messages import error_code, message
from app.models import Connection, SyncRecord
from app.models.base import utcnow
from app.queue.repository import enqueue_many
from app.sync.settings import TranslationSettings
from app.sync.tasks import sync_job


async def handle_conflict(
    session: AsyncSession,
    *,
    connection: Connection,
    settings: TranslationSettings,
    job_id: int | None,
    conflict: Conflict,
) -> None:
    """Apply the connection's `outlook_changes` policy and record it in the history."""
    policy = settings.outlook_changes
    row = await repo.mapping_row(session, conflict.row_id)
    if policy == "restore":
        queued = await enqueue_many(
            session, [sync_job(connection.id, conflict.appointment_id, force=True)]
        )
        if not any(queued_id is not None for queued_id in queued.values()):
            # Its restore is already waiting (a page run again after a crash, or a second
            # edit before it ran): recorded then.
            return
        outcome = "restored"
    else:
        if row is not None:
            if policy == "keep":
                row.detached = True
            # The person's version is accounted for: a later round must not report it again.
            if conflict.change_key is not None:
                row.change_key = conflict.change_key
        outcome = "kept" if policy == "keep" else "reported"
    code = f"outlook_{conflict.kind}_{outcome}"
    params: dict[str, Any] = {
        "mailbox": conflict.mailbox,
        "event_id": conflict.event_id,
        "policy": policy,
    }
    history.add_record(
        session,
        SyncRecord(
            connection_id=connection.id,
            appointment_id=conflict.appointment_id,
            booking_resource_id=conflict.booking_resource_id,
            mailbox=conflict.mailbox,
            job_id=job_id,
            action="outlook_change",
            status="conflict",
            code=code,
            message=message(code, connection.locale, params),
            details=params,
            graph_request_id=None,
        ),
    )
    await session.flush()


async def record_failure(
    session: AsyncSession,
    *,
    connection: Connection,
    mailbox: str,
    error: GraphError,
    job_id: int | None,
) -> None:
    """A delta that failed for good (mailbox gone, consent withdrawn, secret invalid) shows in
    the history and status of every employee of the mailbox, like a failed write does."""
    code, params = error_code(
        error, mailbox=mailbox, tenant=connection.tenant, client_id=connection.client_id
    )
    text = message(code, connection.locale, params)
    now = utcnow()
    employees = await repo.mailbox_employees(session, connection_id=connection.id, mailbox=mailbox)
    targets: list[str | None] = [*employees] or [None]
    for employee in targets:
        history.add_record(
            session,
            SyncRecord(
                connection_id=connection.id,
                appointment_id=None,
                booking_resource_id=employee,
                mailbox=mailbox,
                job_id=job_id,
                action="subscription",
                status="error",
                code=code,
                message=text,
                details=params,
                graph_request_id=error.request_id,
            ),
        )
    await session.flush()
    await repo.set_employees_error(
        session, connection.id, employees, code=code, message=text, now=now
    )
    await secrets.mark_rejected(session, connection_id=connection.id, code=code, now=now)
