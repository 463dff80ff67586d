"""The composition root of background work: every job kind of calbridge and its handler."""

from __future__ import annotations

from functools import partial

from app.busy.tasks import MAILBOX_SWEEP, SYNC_MAILBOX, sweep_mailboxes, sync_mailbox
from app.config import Settings
from app.connections.tasks import (
    CHECK_MAILBOX_JOB,
    SECRET_EXPIRY_INTERVAL_SECONDS,
    SECRET_EXPIRY_JOB,
    check_mailbox_job,
    check_secret_expiry,
)
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.maintenance.tasks import PRUNE_KIND, prune
from app.notifications import tasks as notifications
from app.queue.registry import JobRegistry
from app.sync.tasks import RESYNC, SYNC_APPOINTMENT, resync, sync_appointment


def build_registry(
    settings: Settings, *, graph: GraphClients, secret_box: SecretBox
) -> JobRegistry:
    """The registry every worker of this app runs, its handlers bound to the process's one set
    of Graph clients (one HTTP pool, one token cache per connection) and its secret box."""
    registry = JobRegistry()
    registry.register(PRUNE_KIND, prune, every_seconds=settings.retention.prune_interval_seconds)
    registry.register(
        SYNC_APPOINTMENT, partial(sync_appointment, graph=graph, secret_box=secret_box)
    )
    registry.register(RESYNC, resync)
    registry.register(
        CHECK_MAILBOX_JOB, partial(check_mailbox_job, graph=graph, secret_box=secret_box)
    )
    for kind, handler in (
        (notifications.SUBSCRIPTION_ENSURE, notifications.ensure_subscription),
        (notifications.SUBSCRIPTION_RENEW, notifications.renew_subscription),
        (notifications.SUBSCRIPTION_DELETE, notifications.delete_subscription),
    ):
        registry.register(kind, partial(handler, graph=graph, secret_box=secret_box))
    registry.register(
        notifications.SUBSCRIPTION_UPKEEP,
        partial(notifications.subscription_upkeep, graph=graph, secret_box=secret_box),
        every_seconds=settings.outlook.upkeep_interval_seconds,
    )
    registry.register(
        SECRET_EXPIRY_JOB, check_secret_expiry, every_seconds=SECRET_EXPIRY_INTERVAL_SECONDS
    )
    registry.register(SYNC_MAILBOX, partial(sync_mailbox, graph=graph, secret_box=secret_box))
    registry.register(
        MAILBOX_SWEEP, sweep_mailboxes, every_seconds=settings.outlook.safety_delta_seconds
    )
    return registry
