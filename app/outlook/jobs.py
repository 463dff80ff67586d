"""The Outlook-side job kinds and how to build their jobs (handlers live beside their logic).

- `sync.mailbox`: one calendarView delta run of one mailbox (`full`: drop the delta link and
  start over). One pending per mailbox, so a burst of notifications costs one run; one running
  per mailbox.
- `subscription.ensure`: create (or recreate) the subscription of one mailbox.
- `subscription.renew` / `subscription.delete`: PATCH (or reauthorize) / delete it in Graph
  (a delete queued by deleting the connection carries the credentials it needs).
- `subscription.upkeep` (periodic): renew what expires soon, recreate what is gone.
- `sync.mailbox_sweep` (periodic): the safety delta of every mailbox, for notifications Graph
  dropped.
"""

from __future__ import annotations

from typing import Any

from app.queue.repository import NewJob, keyed_job

SYNC_MAILBOX = "sync.mailbox"
SUBSCRIPTION_ENSURE = "subscription.ensure"
SUBSCRIPTION_UPKEEP = "subscription.upkeep"
SUBSCRIPTION_RENEW = "subscription.renew"
SUBSCRIPTION_DELETE = "subscription.delete"
MAILBOX_SWEEP = "sync.mailbox_sweep"


def mailbox_key(mailbox: str) -> str:
    """Addresses are case-insensitive: one subscription, delta state and set of busy blocks, and
    one key for the jobs, per mailbox however it is spelled."""
    return mailbox.strip().casefold()


def _key(connection_id: int, mailbox: str) -> str:
    return f"{connection_id}:{mailbox_key(mailbox)}"


def _mailbox_args(connection_id: int, mailbox: str) -> dict[str, Any]:
    return {"connection_id": connection_id, "mailbox": mailbox}


def _mailbox_job(
    kind: str, serial: str, connection_id: int, mailbox: str, flag: str | None
) -> NewJob:
    """A job about one mailbox, one pending per kind, mailbox and flag; serialised with the
    other jobs of `serial` for that mailbox."""
    key = _key(connection_id, mailbox)
    return keyed_job(
        kind,
        key,
        _mailbox_args(connection_id, mailbox),
        flag=flag,
        serial_key=f"{serial}:{key}",
        mailbox=mailbox,
    )


def mailbox_sync_job(connection_id: int, mailbox: str, *, full: bool = False) -> NewJob:
    """The delta run of one mailbox (`full`: drop the delta link and start over)."""
    flag = "full" if full else None
    return _mailbox_job(SYNC_MAILBOX, SYNC_MAILBOX, connection_id, mailbox, flag)


def subscription_job(connection_id: int, mailbox: str, *, recreate: bool = False) -> NewJob:
    """Create the mailbox's subscription (`recreate`: even if one is on record)."""
    flag = "recreate" if recreate else None
    return _mailbox_job(SUBSCRIPTION_ENSURE, "subscription", connection_id, mailbox, flag)


def renew_job(connection_id: int, mailbox: str, *, reauthorize: bool = False) -> NewJob:
    """PATCH the mailbox's subscription (`reauthorize`: answer a reauthorizationRequired)."""
    flag = "reauthorize" if reauthorize else None
    return _mailbox_job(SUBSCRIPTION_RENEW, "subscription", connection_id, mailbox, flag)


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
        **_mailbox_args(connection_id, mailbox),
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
