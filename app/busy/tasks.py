"""The busy-time job kinds, their builders and thin handlers.

- `sync.mailbox`: one calendarView delta run of one mailbox (`full`: drop the delta link and
  start over). One pending per mailbox, so a burst of notifications costs one run; one running
  per mailbox.
- `sync.mailbox_sweep` (periodic): the safety delta of every mailbox, for notifications Graph
  dropped.
"""

from __future__ import annotations

import logging

from sqlalchemy.ext.asyncio import AsyncSession

from app.busy import repository as repo
from app.busy.keys import mailbox_key
from app.busy.service import sync_mailbox_impl
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.queue.registry import JobContext
from app.queue.repository import NewJob, enqueue_many, keyed_job

log = logging.getLogger(__name__)

SYNC_MAILBOX = "sync.mailbox"
MAILBOX_SWEEP = "sync.mailbox_sweep"


def mailbox_sync_job(connection_id: int, mailbox: str, *, full: bool = False) -> NewJob:
    """The delta run of one mailbox (`full`: drop the delta link and start over)."""
    key = f"{connection_id}:{mailbox_key(mailbox)}"
    return keyed_job(
        SYNC_MAILBOX,
        key,
        {"connection_id": connection_id, "mailbox": mailbox},
        flag="full" if full else None,
        serial_key=f"{SYNC_MAILBOX}:{key}",
        mailbox=mailbox,
    )


async def sync_mailbox(ctx: JobContext, *, graph: GraphClients, secret_box: SecretBox) -> None:
    """`sync.mailbox`, with the process's Graph clients and secret box (bound in app.tasks)."""
    await sync_mailbox_impl(
        database=ctx.database,
        settings=ctx.settings,
        secret_box=secret_box,
        graph=graph,
        connection_id=int(ctx.args["connection_id"]),
        mailbox=str(ctx.args["mailbox"]),
        full=ctx.args.get("full") is True,
        job_id=ctx.job_id,
        now=ctx.clock(),
    )


async def sweep_mailboxes(ctx: JobContext) -> None:
    """Periodic `sync.mailbox_sweep`: a delta run of every mapped mailbox."""
    async with ctx.database.session_scope() as session:
        queued = await queue_sweep(session)
    log.info("mailbox sweep: %d delta runs queued", queued)


async def queue_sweep(session: AsyncSession) -> int:
    """Enqueue one `sync.mailbox` per mapped mailbox (a pending one is not doubled)."""
    pairs = await repo.mapped_mailboxes(session)
    created = await enqueue_many(session, [mailbox_sync_job(c, m) for c, m in pairs])
    return sum(1 for job_id in created.values() if job_id is not None)
