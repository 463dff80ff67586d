"""The sync job handlers: the queue's thin entries to app.sync.service and app.sync.resync."""

from __future__ import annotations

from typing import cast

from app.crypto import SecretBox
from app.queue.registry import JobContext
from app.sync.graph_clients import GraphClients
from app.sync.jobs import RESYNC, SYNC_APPOINTMENT, ResyncReason
from app.sync.resync import resync_impl
from app.sync.service import sync_appointment_impl

__all__ = ["RESYNC", "SYNC_APPOINTMENT", "resync", "sync_appointment"]


async def sync_appointment(ctx: JobContext, *, graph: GraphClients, secret_box: SecretBox) -> None:
    """Run with the process's Graph clients and secret box (bound in app.jobs.build_registry)."""
    await sync_appointment_impl(
        database=ctx.database,
        settings=ctx.settings,
        secret_box=secret_box,
        graph=graph,
        connection_id=int(ctx.args["connection_id"]),
        appointment_id=str(ctx.args["appointment_id"]),
        job_id=ctx.job_id,
        force=ctx.args.get("force") is True,
        complete=None if ctx.completion is None else ctx.completion.write,
    )


async def resync(ctx: JobContext) -> None:
    """Enqueue the `sync.appointment` jobs the fan-out selects."""
    resource = ctx.args.get("booking_resource_id")
    await resync_impl(
        ctx.database,
        connection_id=int(ctx.args["connection_id"]),
        booking_resource_id=None if resource is None else str(resource),
        reason=cast(ResyncReason, ctx.args["reason"]),
        now=ctx.clock(),
        job_id=ctx.job_id,
        mailbox=ctx.args.get("mailbox"),
    )
