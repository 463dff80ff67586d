"""The `sync.appointment` job handler: the queue's thin entry to app.sync.service."""

from __future__ import annotations

from app.crypto import SecretBox
from app.queue.registry import JobContext
from app.sync.graph_clients import GraphClients
from app.sync.service import sync_appointment_impl

SYNC_APPOINTMENT = "sync.appointment"


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
    )
