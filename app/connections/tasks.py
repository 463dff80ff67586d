"""The connections domain's background jobs: the deferred mailbox check of an employee PUT and
the periodic client-secret expiry warnings."""

from __future__ import annotations

import logging
from datetime import datetime

from app.connections import repository
from app.connections.checks import (
    JOB_CHECK_TIMEOUT,
    apply_to_employee,
    check_mailbox,
)
from app.credentials import secrets
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.db import Database
from app.queue.errors import RetryLater
from app.queue.registry import JobContext
from app.queue.repository import NewJob

log = logging.getLogger(__name__)

CHECK_MAILBOX_JOB = "employee.check_mailbox"
SECRET_EXPIRY_JOB = "connection.secret_expiry"  # noqa: S105 (a job kind)
SECRET_EXPIRY_INTERVAL_SECONDS = 3600


def mailbox_check_job(employee_id: int, mailbox: str) -> NewJob:
    """The deferred check of an employee's mailbox; one waits per employee and mailbox."""
    return NewJob(
        CHECK_MAILBOX_JOB,
        {"employee_id": employee_id, "mailbox": mailbox},
        dedupe_key=f"{CHECK_MAILBOX_JOB}:{employee_id}:{mailbox}",
    )


async def check_mailbox_job(ctx: JobContext, *, graph: GraphClients, secret_box: SecretBox) -> None:
    """`employee.check_mailbox`: re-run an employee's mailbox check and record the verdict.

    Graph still unreachable: raise, so the queue retries with its backoff.
    """
    employee_id = int(ctx.args["employee_id"])
    mailbox = str(ctx.args["mailbox"])
    async with ctx.database.session_scope() as session:
        employee = await repository.get_employee_by_id(session, employee_id)
        if employee is None or employee.mailbox != mailbox:
            return  # deleted or remapped since: its own PUT checked the new mailbox
        connection = await repository.get_connection_by_id(session, employee.connection_id)
        if connection is None:
            return
    # Between the two transactions: no database lock is held while Graph answers.
    result = await check_mailbox(
        connection,
        mailbox,
        graph=graph,
        secret_box=secret_box,
        locale=connection.locale,
        wait_seconds=JOB_CHECK_TIMEOUT,
    )
    if result.pending:
        raise RetryLater(f"mailbox check of {mailbox} still pending: {result.message}")
    async with ctx.database.session_scope() as session:
        # Entra refusing the client secret is the connection's news, whatever became of the
        # employee meanwhile.
        await secrets.mark_rejected(
            session, connection_id=connection.id, code=result.code, now=ctx.clock()
        )
        employee = await repository.get_employee(
            session, connection_id=connection.id, booking_resource_id=employee.booking_resource_id
        )
        if employee is None or employee.mailbox != mailbox:
            return
        apply_to_employee(employee, result)
    log.info("mailbox check of %s: %s", mailbox, result.code)


async def check_secret_expiry(ctx: JobContext) -> None:
    """Periodic `connection.secret_expiry`: record the expiry warnings now due."""
    await check_secret_expiry_impl(ctx.database, now=ctx.clock())


async def check_secret_expiry_impl(database: Database, *, now: datetime) -> int:
    """One transaction over every connection with a known expiry date; warnings recorded."""
    async with database.session_scope() as session:
        return await secrets.announce_expiry(session, now=now)
