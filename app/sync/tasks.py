"""The `sync.appointment` job handler: the queue's thin entry to app.sync.service."""

from __future__ import annotations

from app.config import Settings
from app.crypto import SecretBox, load_secret_box
from app.queue.registry import JobContext
from app.sync.graph_clients import GraphClients
from app.sync.service import sync_appointment_impl

SYNC_APPOINTMENT = "sync.appointment"

# Built on first use and kept for the process's life (one HTTP pool, token caches, limiter);
# not closed before exit: the sockets and MSAL's client go with the process.
_shared: dict[int, tuple[Settings, GraphClients, SecretBox]] = {}


def _plumbing(settings: Settings) -> tuple[GraphClients, SecretBox]:
    known = _shared.get(id(settings))
    if known is None or known[0] is not settings:
        known = (settings, GraphClients(settings), load_secret_box(settings))
        _shared[id(settings)] = known
    return known[1], known[2]


async def sync_appointment(ctx: JobContext) -> None:
    graph, secret_box = _plumbing(ctx.settings)
    await sync_appointment_impl(
        database=ctx.database,
        settings=ctx.settings,
        secret_box=secret_box,
        graph=graph,
        connection_id=int(ctx.args["connection_id"]),
        appointment_id=str(ctx.args["appointment_id"]),
        job_id=ctx.job_id,
    )
