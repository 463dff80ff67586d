"""The composition root of background work: every job kind of calbridge and its handler.

Every handler is registered wrapped (`_recorded`): an exception nobody foresaw is a bug or an
input calbridge cannot handle, so retrying would only repeat it. It lands in the connection's
sync history (`job_internal_error`) and the job fails for good, instead of retrying silently.
"""

from __future__ import annotations

import logging
from functools import partial, wraps

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
from app.history.messages import message
from app.history.repository import add_record
from app.logs import short_reason
from app.maintenance.tasks import PRUNE_KIND, prune
from app.models import SyncRecord
from app.notifications import tasks as notifications
from app.queue.errors import PermanentError
from app.queue.registry import Handler, JobContext, JobRegistry
from app.queue.retry import OUTAGES, steers_retry
from app.sync.repository import get_connection
from app.sync.tasks import RESYNC, SYNC_APPOINTMENT, resync, sync_appointment

log = logging.getLogger(__name__)

# The history keeps the error's type and the start of its text: enough to recognise a bug in
# the logs, short enough for the admin's list.
_ERROR_TEXT_CHARS = 300


def _recorded(handler: Handler) -> Handler:
    """The handler, with an unexpected exception recorded and turned into a PermanentError."""

    @wraps(handler)
    async def run(ctx: JobContext) -> None:
        try:
            await handler(ctx)
        except Exception as error:
            if steers_retry(error):
                raise
            log.exception("job %s (%s) failed unexpectedly", ctx.job_id, ctx.kind)
            params = {"kind": ctx.kind, "error": short_reason(error, _ERROR_TEXT_CHARS)}
            try:
                locale = await _record(ctx, params)
            except OUTAGES:
                # The history cannot be written now (the database is away): a later attempt may.
                log.warning("job %s: the error was not recorded", ctx.job_id, exc_info=True)
                raise error from None
            raise PermanentError(message("job_internal_error", locale, params)) from error

    return run


async def _record(ctx: JobContext, params: dict[str, str]) -> str:
    """Record the failure against the job's connection, if it names one; the message's locale."""
    connection_id = ctx.args.get("connection_id")
    if not isinstance(connection_id, int):
        return "en"
    async with ctx.database.session_scope() as session:
        connection = await get_connection(session, connection_id)
        if connection is None:
            return "en"
        add_record(
            session,
            SyncRecord(
                connection_id=connection_id,
                appointment_id=_text_arg(ctx, "appointment_id", 64),
                mailbox=_text_arg(ctx, "mailbox", 320),
                job_id=ctx.job_id,
                action="job",
                status="error",
                code="job_internal_error",
                message=message("job_internal_error", connection.locale, params),
                details=params,
            ),
        )
        return connection.locale


def _text_arg(ctx: JobContext, name: str, limit: int) -> str | None:
    value = ctx.args.get(name)
    return value[:limit] if isinstance(value, str) else None


class _RecordingRegistry(JobRegistry):
    """A registry whose handlers are all `_recorded`."""

    def register(self, kind: str, handler: Handler, *, every_seconds: float | None = None) -> None:
        super().register(kind, _recorded(handler), every_seconds=every_seconds)


def build_registry(
    settings: Settings, *, graph: GraphClients, secret_box: SecretBox
) -> JobRegistry:
    """The registry every worker of this app runs, its handlers bound to the process's one set
    of Graph clients (one HTTP pool, one token cache per connection) and its secret box."""
    registry = _RecordingRegistry()
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
