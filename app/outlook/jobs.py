"""The Outlook-side job kinds and how to build their jobs (handlers live beside their logic).

- `sync.mailbox`: one calendarView delta run of one mailbox (`full`: drop the delta link and
  start over). One pending per mailbox, so a burst of notifications costs one run; one running
  per mailbox.
- `subscription.ensure`: create (or recreate) the subscription of one mailbox.
- `subscription.upkeep` (periodic): renew what expires soon, recreate what is gone.
- `sync.mailbox_sweep` (periodic): the safety delta of every mailbox, for notifications Graph
  dropped.
"""

from __future__ import annotations

from app.queue.repository import NewJob

SYNC_MAILBOX = "sync.mailbox"
SUBSCRIPTION_ENSURE = "subscription.ensure"
SUBSCRIPTION_UPKEEP = "subscription.upkeep"
MAILBOX_SWEEP = "sync.mailbox_sweep"


def _mailbox_key(connection_id: int, mailbox: str) -> str:
    return f"{connection_id}:{mailbox.strip().casefold()}"


def mailbox_sync_job(connection_id: int, mailbox: str, *, full: bool = False) -> NewJob:
    """The delta run of one mailbox; a `full` one has its own dedupe key so a pending plain run
    cannot swallow it, and the same serial key so the two never overlap."""
    key = _mailbox_key(connection_id, mailbox)
    args: dict[str, object] = {"connection_id": connection_id, "mailbox": mailbox}
    if full:
        args["full"] = True
    return NewJob(
        kind=SYNC_MAILBOX,
        args=args,
        dedupe_key=f"{SYNC_MAILBOX}:{key}" + (":full" if full else ""),
        serial_key=f"{SYNC_MAILBOX}:{key}",
        mailbox=mailbox,
    )


def subscription_job(connection_id: int, mailbox: str, *, recreate: bool = False) -> NewJob:
    """Create the mailbox's subscription (`recreate`: even if one is on record)."""
    key = _mailbox_key(connection_id, mailbox)
    args: dict[str, object] = {"connection_id": connection_id, "mailbox": mailbox}
    if recreate:
        args["recreate"] = True
    return NewJob(
        kind=SUBSCRIPTION_ENSURE,
        args=args,
        dedupe_key=f"{SUBSCRIPTION_ENSURE}:{key}" + (":recreate" if recreate else ""),
        serial_key=f"subscription:{key}",
        mailbox=mailbox,
    )
