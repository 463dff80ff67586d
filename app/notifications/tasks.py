"""The subscription job kinds, their builders and thin handlers.

- `subscription.ensure`: create (or recreate) the subscription of one mailbox.
- `subscription.renew` / `subscription.delete`: PATCH (or reauthorize) / delete it in Graph
  (a delete queued by deleting the connection carries the credentials it needs).
- `subscription.upkeep` (periodic): renew what expires soon, recreate what is gone.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from app.busy.keys import mailbox_key
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.queue.registry import JobContext
from app.queue.repository import NewJob, keyed_job

if TYPE_CHECKING:
    from app.notifications.subscriptions import Subscriber

log = logging.getLogger(__name__)

SUBSCRIPTION_ENSURE = "subscription.ensure"
SUBSCRIPTION_UPKEEP = "subscription.upkeep"
SUBSCRIPTION_RENEW = "subscription.renew"
SUBSCRIPTION_DELETE = "subscription.delete"


def _key(connection_id: int, mailbox: str) -> str:
    return f"{connection_id}:{mailbox_key(mailbox)}"


def _mailbox_job(kind: str, connection_id: int, mailbox: str, flag: str | None) -> NewJob:
    """A job about one mailbox's subscription, one pending per kind, mailbox and flag;
    serialised with the mailbox's other subscription jobs."""
    key = _key(connection_id, mailbox)
    return keyed_job(
        kind,
        key,
        {"connection_id": connection_id, "mailbox": mailbox},
        flag=flag,
        serial_key=f"subscription:{key}",
        mailbox=mailbox,
    )


def subscription_job(connection_id: int, mailbox: str, *, recreate: bool = False) -> NewJob:
    """Create the mailbox's subscription (`recreate`: even if one is on record)."""
    flag = "recreate" if recreate else None
    return _mailbox_job(SUBSCRIPTION_ENSURE, connection_id, mailbox, flag)


def renew_job(connection_id: int, mailbox: str, *, reauthorize: bool = False) -> NewJob:
    """PATCH the mailbox's subscription (`reauthorize`: answer a reauthorizationRequired)."""
    flag = "reauthorize" if reauthorize else None
    return _mailbox_job(SUBSCRIPTION_RENEW, connection_id, mailbox, flag)


def delete_job(
    connection_id: int,
    mailbox: str,
    graph_subscription_id: str,
    *,
    credentials: dict[str, str] | None = None,
) -> NewJob:
    """Delete a subscription in Graph whose row is already gone (the mapping was removed).

    `credentials` (tenant, client_id, client_secret_encrypted: the Fernet token, never the
    secret) go with the job when the connection itself is being deleted, since the job runs
    after its row, and so its credentials, are gone.
    """
    args: dict[str, Any] = {
        "connection_id": connection_id,
        "mailbox": mailbox,
        "graph_subscription_id": graph_subscription_id,
    }
    if credentials is not None:
        args["credentials"] = credentials
    return keyed_job(
        SUBSCRIPTION_DELETE,
        graph_subscription_id,
        args,
        serial_key=f"subscription:{_key(connection_id, mailbox)}",
        mailbox=mailbox,
    )


# --- handlers (bound to the process's clients in app.tasks) ------------------------------------


def _subscriber(ctx: JobContext, graph: GraphClients, secret_box: SecretBox) -> Subscriber:
    # Imported here, not above: the subscriber queues the jobs this module builds.
    from app.notifications.subscriptions import Subscriber

    return Subscriber(ctx.database, ctx.settings, graph, secret_box)


async def ensure_subscription(
    ctx: JobContext, *, graph: GraphClients, secret_box: SecretBox
) -> None:
    """`subscription.ensure`."""
    await _subscriber(ctx, graph, secret_box).ensure(
        connection_id=int(ctx.args["connection_id"]),
        mailbox=str(ctx.args["mailbox"]),
        recreate=ctx.args.get("recreate") is True,
        job_id=ctx.job_id,
        now=ctx.clock(),
    )


async def renew_subscription(
    ctx: JobContext, *, graph: GraphClients, secret_box: SecretBox
) -> None:
    """`subscription.renew`."""
    await _subscriber(ctx, graph, secret_box).renew(
        connection_id=int(ctx.args["connection_id"]),
        mailbox=str(ctx.args["mailbox"]),
        reauthorize=ctx.args.get("reauthorize") is True,
        job_id=ctx.job_id,
        now=ctx.clock(),
    )


async def delete_subscription(
    ctx: JobContext, *, graph: GraphClients, secret_box: SecretBox
) -> None:
    """`subscription.delete`."""
    credentials = ctx.args.get("credentials")
    await _subscriber(ctx, graph, secret_box).delete(
        connection_id=int(ctx.args["connection_id"]),
        mailbox=str(ctx.args["mailbox"]),
        graph_subscription_id=str(ctx.args["graph_subscription_id"]),
        job_id=ctx.job_id,
        credentials={str(k): str(v) for k, v in credentials.items()}
        if isinstance(credentials, dict)
        else None,
        now=ctx.clock(),
    )


async def subscription_upkeep(
    ctx: JobContext, *, graph: GraphClients, secret_box: SecretBox
) -> None:
    """Periodic `subscription.upkeep`: queue what the subscriptions need."""
    queued = await _subscriber(ctx, graph, secret_box).upkeep(now=ctx.clock())
    if queued:
        log.info("subscription upkeep queued %d jobs", queued)
