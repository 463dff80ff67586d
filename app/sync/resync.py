"""`sync.resync`: turn "sync this employee (or connection) again" into one `sync.appointment` job
per appointment, each with the serial key of its appointment, so a fan-out never races the
intake's jobs of the same appointment.

Which appointments, by reason:
- `backfill` (an employee was mapped, or moved to another mailbox): those that list the employee
  and end after `now - PAST`, plus every one with a live calbridge event of the employee (they
  move along with a changed mailbox). Cancelled ones only if they still have an event.
- `resync` (the admin's button): the same, each run forced (every field written again, a
  deleted event re-created), so drift made in Outlook is repaired.
- `removed` (employee deleted with `remove_events`): every one with a live event of the
  employee; the employee is no longer mapped, so plan() deletes those events.
- `settings_changed` (the connection's event settings or language): every one with a live
  event that ends after `now - PAST`; only fields whose content changed are sent.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.history.messages import message
from app.queue.repository import enqueue_many
from app.sync import outcome_repository as outcome_repo
from app.sync import repository as repo
from app.sync import tasks
from app.sync.planner import listed_employees
from app.sync.translate import appointment_end

log = logging.getLogger(__name__)

#: How far back a backfill or resync reaches: the day that just ended is still worth showing.
PAST = timedelta(days=1)

RESYNC_CODES: dict[tasks.ResyncReason, str] = {
    "backfill": "backfill_queued",
    "resync": "resync_queued",
    "removed": "removal_queued",
    "settings_changed": "settings_resync_queued",
}


async def resync_impl(
    session: AsyncSession,
    *,
    connection_id: int,
    booking_resource_id: str | None,
    reason: tasks.ResyncReason,
    now: datetime,
    job_id: int | None = None,
    mailbox: str | None = None,
) -> list[str]:
    """Enqueue the selected appointments' jobs and record the fan-out in the history, in the
    caller's transaction; returns the appointment ids (a vanished connection selects none)."""
    connection = await repo.get_connection(session, connection_id)
    if connection is None:
        return []
    selected = await select_appointments(
        session,
        connection_id=connection_id,
        booking_resource_id=booking_resource_id,
        reason=reason,
        since=now - PAST,
    )
    force = reason == "resync"
    if reason == "removed":
        # The runs delete the employee's events, from the mailbox it was mapped to.
        hints = {a: mailbox for a in selected}
    else:
        payloads = {
            (connection_id, a): payload for a, payload in selected.items() if payload is not None
        }
        single = await repo.single_mailboxes(session, payloads)
        hints = {a: single.get((connection_id, a)) for a in selected}
    await enqueue_many(
        session,
        [tasks.sync_job(connection_id, a, force=force, mailbox=hints[a]) for a in selected],
        now=now,
    )
    if booking_resource_id is not None:
        mailbox = (
            await repo.employee_mailbox(session, connection_id, booking_resource_id) or mailbox
        )
    if not selected and reason == "backfill":
        # A new mapping with nothing to catch up on is not worth a line in the history.
        return []
    code = RESYNC_CODES[reason]
    params: dict[str, Any] = {
        "count": len(selected),
        "employee": booking_resource_id or "*",
        "mailbox": mailbox or "?",
        "reason": reason,
    }
    await outcome_repo.add_record(
        session,
        outcome_repo.Target(connection_id, None, booking_resource_id, mailbox),
        job_id=job_id,
        action=reason,
        status="queued",
        code=code,
        message=message(code, connection.locale, params),
        details=params,
        duration_ms=None,
        graph_request_id=None,
    )
    log.info(
        "sync.resync %s of connection %s, employee %s: %d appointments",
        reason,
        connection_id,
        booking_resource_id or "*",
        len(selected),
    )
    return list(selected)


async def select_appointments(
    session: AsyncSession,
    *,
    connection_id: int,
    booking_resource_id: str | None,
    reason: tasks.ResyncReason,
    since: datetime,
) -> dict[str, dict[str, Any] | None]:
    """The appointments a fan-out of `reason` enqueues, by id in order, with their snapshots'
    payloads (None for a removal's, which reads none; see the module docstring)."""
    with_events = await repo.appointments_with_events(session, connection_id, booking_resource_id)
    if reason == "removed":
        return dict.fromkeys(sorted(with_events))

    selected: dict[str, dict[str, Any] | None] = {}
    for appointment_id, payload, canceled in await repo.snapshots(session, connection_id):
        has_events = appointment_id in with_events
        if reason == "settings_changed":
            if has_events and _ends_after(payload, since):
                selected[appointment_id] = payload
            continue
        if has_events:
            selected[appointment_id] = payload
        elif (
            not canceled
            and payload.get("canceled") is not True
            and _lists(payload, booking_resource_id)
            and _ends_after(payload, since)
        ):
            selected[appointment_id] = payload
    return {key: selected[key] for key in sorted(selected)}


def _lists(payload: dict[str, Any], booking_resource_id: str | None) -> bool:
    employees: Iterable[str] = listed_employees(payload.get("bookingResourceList"))
    if booking_resource_id is None:
        return any(True for _ in employees)
    return booking_resource_id in employees


def _ends_after(payload: dict[str, Any], since: datetime) -> bool:
    end = appointment_end(payload)
    return end is not None and end >= since
