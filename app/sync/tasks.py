"""The sync job kinds, how to build their jobs, and their thin handlers.

The services enqueue these jobs too, so each side imports the other as a module, never names
from it: either may be imported first.

- `sync.appointment`: one appointment in all its mailboxes; what the intake enqueues.
- `sync.resync`: the fan-out to the `sync.appointment` jobs of one employee or of a whole
  connection (backfill after a mapping, an admin's resync, removal, changed settings).
"""

from __future__ import annotations

from typing import Literal, cast

from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.queue.registry import JobContext
from app.queue.repository import NewJob, keyed_job
from app.sync import resync as resync_service
from app.sync import service as sync_service

SYNC_APPOINTMENT = "sync.appointment"
RESYNC = "sync.resync"

#: Why a fan-out runs; it decides which appointments it selects (app.sync.resync).
ResyncReason = Literal["backfill", "resync", "removed", "settings_changed"]


def sync_job(
    connection_id: int, appointment_id: str, *, force: bool = False, mailbox: str | None = None
) -> NewJob:
    """The `sync.appointment` job of one appointment.

    One pending job per appointment (a burst of deliveries costs one run) and one running at a
    time, in order. A forced run has its own dedupe key, so a pending plain one cannot swallow
    it, and the same serial key, so it runs after that one. `mailbox`, when the appointment
    is in one mailbox only, puts the job under the queue's limit of running jobs per mailbox,
    which every worker process shares (each process keeps to Outlook's 4 concurrent requests
    per mailbox on its own; several would add theirs up).
    """
    key = f"{connection_id}:{appointment_id}"
    return keyed_job(
        SYNC_APPOINTMENT,
        key,
        {"connection_id": connection_id, "appointment_id": appointment_id},
        flag="force" if force else None,
        serial_key=f"appointment:{key}",
        mailbox=mailbox,
    )


def resync_job(
    connection_id: int,
    reason: ResyncReason,
    *,
    booking_resource_id: str | None = None,
    mailbox: str | None = None,
) -> NewJob:
    """The fan-out for one employee, or (None) for every employee of the connection; `mailbox`
    names the employee's mailbox in the history when the mapping is already gone (removal)."""
    scope = booking_resource_id or "*"
    return keyed_job(
        RESYNC,
        f"{connection_id}:{scope}:{reason}",
        {
            "connection_id": connection_id,
            "booking_resource_id": booking_resource_id,
            "reason": reason,
            "mailbox": mailbox,
        },
        # After every fan-out of the same scope queued before it: a removal never overtakes a
        # backfill of the same employee.
        serial_key=f"{RESYNC}:{connection_id}:{scope}",
    )


async def sync_appointment(ctx: JobContext, *, graph: GraphClients, secret_box: SecretBox) -> None:
    """Run with the process's Graph clients and secret box (bound in app.tasks.build_registry)."""
    await sync_service.sync_appointment_impl(
        database=ctx.database,
        settings=ctx.settings,
        secret_box=secret_box,
        graph=graph,
        connection_id=int(ctx.args["connection_id"]),
        appointment_id=str(ctx.args["appointment_id"]),
        job_id=ctx.job_id,
        force=ctx.args.get("force") is True,
    )


async def resync(ctx: JobContext) -> None:
    """Enqueue the `sync.appointment` jobs the fan-out selects, in the job's one transaction."""
    resource = ctx.args.get("booking_resource_id")
    async with ctx.database.session_scope() as session:
        await resync_service.resync_impl(
            session,
            connection_id=int(ctx.args["connection_id"]),
            booking_resource_id=None if resource is None else str(resource),
            reason=cast(ResyncReason, ctx.args["reason"]),
            now=ctx.clock(),
            job_id=ctx.job_id,
            mailbox=ctx.args.get("mailbox"),
        )
