"""The `sync.appointment` run: read the snapshot and plan in one short transaction, run each
employee's actions against Graph outside any transaction (app.sync.actions, which persists each
outcome in a short one of its own), then tell the queue how the run ended.

A run cannot be one transaction: it never holds one open across a Graph call, so it draws its
transactions from the Database itself, each committed as soon as its rows are written.
"""

from __future__ import annotations

import asyncio
import logging

from app import logs
from app.config import Settings
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.db import Database
from app.graph.errors import Throttled
from app.history.messages import message
from app.queue.errors import PermanentError
from app.queue.retry import OUTAGES, steers_retry
from app.sync import outcome_repository as outcome_repo
from app.sync import repository as repo
from app.sync.actions import Run, record_unmapped, run_employee
from app.sync.planner import Action, Create, Skip, plan
from app.sync.translate import InvalidAppointment

log = logging.getLogger(__name__)


async def sync_appointment_impl(
    *,
    database: Database,
    settings: Settings,
    secret_box: SecretBox,
    graph: GraphClients,
    connection_id: int,
    appointment_id: str,
    job_id: int | None = None,
    force: bool = False,
) -> None:
    """Make every target mailbox match the appointment's latest snapshot (`force`: write every
    field of existing events again, see plan()).

    Raises the retryable Graph error (after every target was tried) for the queue to decide
    when to retry, or PermanentError when a target failed for good; the failure is in the sync
    history either way. Any other error but a passing outage is a bug or an input calbridge
    cannot handle: retrying would only repeat it, so it is recorded (`internal_error`) and the
    job fails for good.
    """
    try:
        await _sync_appointment(
            database=database,
            settings=settings,
            secret_box=secret_box,
            graph=graph,
            connection_id=connection_id,
            appointment_id=appointment_id,
            job_id=job_id,
            force=force,
        )
    except Exception as error:
        if steers_retry(error):
            raise
        text: str | None = None
        try:
            text = await _record_internal_error(
                database,
                connection_id=connection_id,
                appointment_id=appointment_id,
                job_id=job_id,
                error=error,
            )
        except OUTAGES:
            log.warning(
                "sync.appointment %s/%s: the error was not recorded",
                connection_id,
                appointment_id,
                exc_info=True,
            )
        if text is None:
            # The history cannot be written now (the database is away): a later attempt may.
            raise
        raise PermanentError(text) from error


# The history keeps the error's type and the start of its text: enough to recognise a bug in
# the logs, short enough for the admin's list.
_ERROR_TEXT_CHARS = 300


async def _record_internal_error(
    database: Database,
    *,
    connection_id: int,
    appointment_id: str,
    job_id: int | None,
    error: Exception,
) -> str:
    """The sync history record of an unexpected error, in the connection's language."""
    log.exception("sync.appointment %s/%s failed unexpectedly", connection_id, appointment_id)
    summary = logs.short_reason(error, _ERROR_TEXT_CHARS)
    params = {"error": summary}
    async with database.session_scope() as session:
        connection = await repo.get_connection(session, connection_id)
        if connection is None:  # the connection is gone: nothing to record against
            return message("internal_error", "en", params)
        text = message("internal_error", connection.locale, params)
        await outcome_repo.add_appointment_error(
            session,
            connection_id=connection_id,
            appointment_id=appointment_id,
            job_id=job_id,
            action="sync",
            code="internal_error",
            message=text,
            details=params,
        )
    return text


async def _sync_appointment(
    *,
    database: Database,
    settings: Settings,
    secret_box: SecretBox,
    graph: GraphClients,
    connection_id: int,
    appointment_id: str,
    job_id: int | None,
    force: bool,
) -> None:
    async with database.session_scope() as session:
        state = await repo.load_state(session, connection_id, appointment_id)
        if state is None:
            log.info(
                "sync.appointment %s/%s: no connection or snapshot", connection_id, appointment_id
            )
            return
        connection = state.connection
        logs.bind(organization_id=connection.organization_id)
        try:
            actions = plan(
                state.payload,
                organization_id=connection.organization_id,
                employees=state.employees,
                mappings=state.mappings,
                settings=state.settings,
                canceled=state.canceled,
                force=force,
            )
        except InvalidAppointment as invalid:
            # The reason as a code, not as English text: the record is in one language and can
            # be rendered in the other.
            params = {"reason_code": invalid.reason, **invalid.params}
            text = message("invalid_appointment", connection.locale, params)
            await outcome_repo.add_appointment_error(
                session,
                connection_id=connection_id,
                appointment_id=appointment_id,
                job_id=job_id,
                action="plan",
                code="invalid_appointment",
                message=text,
                details=params,
            )
            invalid_text: str | None = text
        else:
            invalid_text = None
            # Every create's row is written before its POST (DESIGN.md), here in the same short
            # transaction as the read rather than one transaction per create.
            for action in actions:
                if isinstance(action, Create):
                    target = outcome_repo.Target(
                        connection_id, appointment_id, action.booking_resource_id, action.mailbox
                    )
                    await outcome_repo.ensure_intent(session, target, generation=action.generation)
    if invalid_text is not None:
        raise PermanentError(invalid_text)

    run = Run(
        database=database,
        client=graph.client_for(connection, secret_box),
        connection_id=connection_id,
        appointment_id=appointment_id,
        tenant=connection.tenant,
        client_id=connection.client_id,
        locale=connection.locale,
        job_id=job_id,
        unmapped_recorded=state.unmapped_recorded,
        known_ids=frozenset(m.graph_event_id for m in state.mappings if m.graph_event_id),
        secret_rejected=connection.client_secret_rejected_at is not None,
        received_at=None if force else state.received_at,
    )
    per_employee: dict[str, list[Action]] = {}
    for action in actions:
        per_employee.setdefault(action.booking_resource_id, []).append(action)
    # Employees with nothing to do but be recorded as unmapped are recorded together, in chunks.
    unmapped = [
        own[0]
        for own in per_employee.values()
        if len(own) == 1 and isinstance(own[0], Skip) and own[0].reason == "unmapped"
    ]
    for skip in unmapped:
        del per_employee[skip.booking_resource_id]
    await record_unmapped(run, unmapped)
    if len(per_employee) == 1:  # the usual case: no task of its own needed
        [own] = per_employee.values()
        await run_employee(run, own)
    elif per_employee:
        outcomes = await asyncio.gather(
            *(run_employee(run, own) for own in per_employee.values()), return_exceptions=True
        )
        # Raised only once every employee's actions have ended: a plain gather would let the
        # others run on after the first unexpected error (a database error, say), their Graph
        # writes racing the job's next attempt.
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    if run.retry:
        # The longest throttle decides: retrying sooner would only be refused again.
        throttled = [e for e in run.retry if isinstance(e, Throttled)]
        raise max(throttled, key=lambda e: e.retry_after) if throttled else run.retry[0]
    if run.permanent:
        raise PermanentError("; ".join(run.permanent))
