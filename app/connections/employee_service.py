"""Employees: map bookingtime booking resources to mailboxes, record their mailbox checks, queue
the syncs a mapping needs, and remove mappings. Never commits."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections import repository
from app.connections.checks import CheckResult, apply_to_employee
from app.connections.employee_schemas import EmployeeIn
from app.connections.service import ConcurrentChangeError, get_connection, get_employee
from app.connections.tasks import mailbox_check_job
from app.credentials.secrets import mark_rejected
from app.models import Connection, Employee
from app.models.base import utcnow
from app.notifications import service as subscriptions
from app.queue.repository import enqueue_many
from app.sync.tasks import resync_job


async def list_employees(session: AsyncSession, *, organization_id: str) -> list[Employee]:
    """The organisation's employees, ordered by booking-resource id."""
    connection = await get_connection(session, organization_id=organization_id)
    return await repository.list_employees(session, connection_id=connection.id)


@dataclass(frozen=True)
class PutEmployeeResult:
    """The outcome of an employee PUT, and what decides whether to backfill its calendar."""

    employee: Employee
    created: bool
    mailbox_changed: bool
    had_error: bool  # the status showed an error before this PUT

    @property
    def needs_backfill(self) -> bool:
        """A new or moved mapping, or one that failed before (fixed now, perhaps)."""
        return self.created or self.mailbox_changed or self.had_error


async def put_employee(
    session: AsyncSession, *, organization_id: str, employee_id: str, data: EmployeeIn
) -> PutEmployeeResult:
    """Map an employee to a mailbox."""
    connection = await get_connection(session, organization_id=organization_id)
    employee = await repository.get_employee(
        session, connection_id=connection.id, booking_resource_id=employee_id
    )
    if employee is None:
        now = utcnow()
        employee = Employee(
            connection_id=connection.id,
            booking_resource_id=employee_id,
            mailbox=data.mailbox,
            created_at=now,
            updated_at=now,
        )
        try:
            await repository.add_employee(session, employee)
        except IntegrityError as exc:
            raise ConcurrentChangeError() from exc
        return PutEmployeeResult(employee, True, False, False)
    had_error = employee.last_error_code is not None
    changed = employee.mailbox != data.mailbox
    if changed:
        # The status described the old mailbox; the new one has not been synced yet.
        previous = employee.mailbox
        employee.mailbox = data.mailbox
        employee.last_success_at = None
        employee.last_error_at = None
        employee.last_error_code = None
        employee.last_error_message = None
        await session.flush()
        await subscriptions.release_mailbox(session, connection_id=connection.id, mailbox=previous)
    return PutEmployeeResult(employee, False, changed, had_error)


async def queue_employee_sync(
    session: AsyncSession, *, employee: Employee, reason: Literal["backfill", "resync"]
) -> bool:
    """Queue the fan-out that syncs the appointments calbridge holds for the employee: a
    `backfill` (new or moved mapping) or a forced `resync`; False when one was already waiting."""
    job = resync_job(
        employee.connection_id, reason, booking_resource_id=employee.booking_resource_id
    )
    queued = await enqueue_many(session, [job])
    return queued[job.dedupe_key] is not None


@dataclass(frozen=True)
class DeletedEmployee:
    """What a delete removed, and how many calbridge events it queued for removal."""

    connection: Connection
    booking_resource_id: str
    mailbox: str
    events: int


async def delete_employee(
    session: AsyncSession, *, organization_id: str, employee_id: str, remove_events: bool = False
) -> DeletedEmployee:
    """Remove an employee's mapping; its sync history stays. With `remove_events`, calbridge's
    events in its mailbox are deleted in the background (the mapping rows say which)."""
    connection = await get_connection(session, organization_id=organization_id)
    employee = await get_employee(session, organization_id=organization_id, employee_id=employee_id)
    mailbox = employee.mailbox
    await repository.delete_employee(session, employee)
    await subscriptions.release_mailbox(session, connection_id=connection.id, mailbox=mailbox)
    events = 0
    if remove_events:
        events = await repository.count_live_events(
            session, connection_id=connection.id, booking_resource_id=employee_id
        )
    if events:
        job = resync_job(connection.id, "removed", booking_resource_id=employee_id, mailbox=mailbox)
        await enqueue_many(session, [job])
    return DeletedEmployee(connection, employee_id, mailbox, events)


async def record_mailbox_check(
    session: AsyncSession, *, put: PutEmployeeResult, result: CheckResult
) -> bool:
    """Store the mailbox check of an employee PUT, then queue what a mapping whose check did not
    fail needs: its calendar's backfill (see `needs_backfill`) and its mailbox's change
    notifications. True when a backfill was queued.

    A pending check is queued as a background `employee.check_mailbox` job; a verdict goes into
    the employee's status (and Entra's refusal of the secret onto the connection).
    """
    employee = put.employee
    if result.pending:
        await enqueue_many(session, [mailbox_check_job(employee.id, employee.mailbox)])
    else:
        apply_to_employee(employee, result)
        await mark_rejected(session, connection_id=employee.connection_id, code=result.code)
        await session.flush()
    if result.ok is False:
        return False
    if put.needs_backfill:
        await queue_employee_sync(session, employee=employee, reason="backfill")
    # A no-op when the mailbox has its subscription; without a public URL the job records why
    # change notifications are off.
    await subscriptions.queue_ensure(
        session, connection_id=employee.connection_id, mailbox=employee.mailbox
    )
    return put.needs_backfill
