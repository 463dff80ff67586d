"""The `sync.appointment` executor: read the snapshot, plan, run each action against Graph
outside any transaction, then persist mapping, history and employee status in one short one."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from typing import Any

from app import logs, metrics
from app.config import Settings
from app.connections import secrets
from app.crypto import SecretBox
from app.db import Database, Statements, run_in_session
from app.graph.client import GraphClient
from app.graph.errors import GraphError, ItemNotFound, Throttled
from app.graph.schemas import Event
from app.models.base import utcnow
from app.queue.errors import PermanentError
from app.sync import repository as repo
from app.sync.graph_clients import GraphClients
from app.sync.messages import error_code, message
from app.sync.planner import Action, Create, Delete, Skip, Update, plan
from app.sync.retry import job_error
from app.sync.translate import InvalidAppointment

log = logging.getLogger(__name__)

_KIND: dict[type, str] = {Create: "create", Update: "update", Delete: "delete"}


@dataclass
class _Run:
    """One job run's fixed facts and the failures collected across targets."""

    database: Database
    client: GraphClient
    connection_id: int
    appointment_id: str
    tenant: str
    client_id: str
    locale: str
    job_id: int | None
    unmapped_recorded: frozenset[str]
    known_ids: frozenset[str]
    secret_rejected: bool
    # The snapshot's receipt, for the end-to-end lag; None on a forced resync (not a delivery).
    received_at: datetime | None
    # The job's completion, written by the one success unit of a run with one Graph write.
    complete: Callable[[Statements], None] | None = None
    retry: list[GraphError] = field(default_factory=list)
    permanent: list[str] = field(default_factory=list)


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
    complete: Callable[[Statements], None] | None = None,
) -> None:
    """Make every target mailbox match the appointment's latest snapshot (`force`: write every
    field of existing events again, see plan()). `complete` marks the job done in a unit of
    work's transaction: a run whose only action is one Graph write does so with its outcome.

    Raises the queue exception of a retryable Graph error (after every target was tried), or
    PermanentError when a target failed for good; the failure is in the sync history either way.
    """

    def load_and_plan(db: Statements) -> tuple[repo.SyncState | None, list[Action], str | None]:
        state = repo.load_state(db, connection_id, appointment_id)
        if state is None:
            return None, [], None
        try:
            actions = plan(
                state.payload,
                organization_id=state.connection.organization_id,
                employees=state.employees,
                mappings=state.mappings,
                settings=state.settings,
                canceled=state.canceled,
                force=force,
            )
        except InvalidAppointment as invalid:
            return state, [], str(invalid)
        # Every create's row is written before its POST (DESIGN.md), here in the same short
        # transaction as the read rather than one transaction per create.
        for action in actions:
            if isinstance(action, Create):
                target = repo.Target(
                    connection_id, appointment_id, action.booking_resource_id, action.mailbox
                )
                repo.ensure_intent(db, target, generation=action.generation)
        return state, actions, None

    state, actions, invalid = await database.run_unit(load_and_plan)
    if state is None:
        log.info("sync.appointment %s/%s: no connection or snapshot", connection_id, appointment_id)
        return
    connection = state.connection
    logs.bind(organization_id=connection.organization_id)
    if invalid is not None:
        params = {"error": invalid}
        text = message("invalid_appointment", connection.locale, params)
        record = partial(
            repo.add_record,
            target=repo.Target(connection_id, appointment_id, None, None),
            job_id=job_id,
            action="plan",
            status="error",
            code="invalid_appointment",
            message=text,
            details=params,
            duration_ms=None,
            graph_request_id=None,
        )
        await database.run_unit(record)
        raise PermanentError(text)

    run = _Run(
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
    if (
        len(actions) == 1
        and isinstance(actions[0], Create | Update | Delete)
        and not run.secret_rejected  # clearing it follows the success unit
    ):
        # Its success unit is the run's last act: nothing after it can fail the job.
        run.complete = complete
    per_employee: dict[str, list[Action]] = {}
    for action in actions:
        per_employee.setdefault(action.booking_resource_id, []).append(action)
    if len(per_employee) == 1:  # the usual case: no task of its own needed
        [own] = per_employee.values()
        await _run_employee(run, own)
    else:
        outcomes = await asyncio.gather(
            *(_run_employee(run, own) for own in per_employee.values()), return_exceptions=True
        )
        # Raised only once every employee's actions have ended: a plain gather would let the
        # others run on after the first unexpected error (a database error, say), their Graph
        # writes racing the job's next attempt.
        for outcome in outcomes:
            if isinstance(outcome, BaseException):
                raise outcome

    if run.retry:
        throttled = [e for e in run.retry if isinstance(e, Throttled)]
        raise job_error(max(throttled, key=lambda e: e.retry_after) if throttled else run.retry[0])
    if run.permanent:
        raise PermanentError("; ".join(run.permanent))


async def _run_employee(run: _Run, actions: list[Action]) -> None:
    """One employee's actions in order (deletes first); the first failure ends them."""
    if actions:  # the job's only employee, or a task of its own (gather): the binding stays
        logs.bind(employee_id=actions[0].booking_resource_id)
    for action in actions:
        started = time.monotonic()
        try:
            await _execute(run, action, started)
        except GraphError as error:
            await _failed(run, action, error, started)
            return
        if run.received_at is not None and not isinstance(action, Skip):
            metrics.end_to_end_lag(run.received_at)


async def _execute(run: _Run, action: Action, started: float) -> None:
    if isinstance(action, Create):
        await _create(run, action, started, intent_written=True)
    elif isinstance(action, Update):
        await _update(run, action, started)
    elif isinstance(action, Delete):
        await _delete(run, action, started)
    else:
        await _skip(run, action)


def _target(run: _Run, action: Action) -> repo.Target:
    return repo.Target(
        run.connection_id, run.appointment_id, action.booking_resource_id, action.mailbox
    )


async def _create(
    run: _Run,
    action: Create,
    started: float,
    *,
    intent_written: bool = False,
    code: str = "created",
) -> None:
    target = _target(run, action)
    if not intent_written:
        await run.database.run_unit(
            partial(repo.ensure_intent, target=target, generation=action.generation)
        )
    event: Event | None = None
    request_id: str | None = None
    if action.lookup_first:
        found = await run.client.find_events_by_tag(action.mailbox, action.tag)
        if found.value:
            keep, *extras = found.value
            for extra in extras:
                await _delete_quietly(run.client, action.mailbox, extra.id)
            patched = await run.client.update_event(action.mailbox, keep.id, action.event)
            event, request_id = patched.value, patched.request_id
    if event is None:
        created = await run.client.create_event(
            action.mailbox, action.event, transaction_id=action.transaction_id, tag=action.tag
        )
        event, request_id = created.value, created.request_id
    saved = partial(
        repo.save_created,
        target=target,
        generation=action.generation,
        event=event,
        field_hashes=action.field_hashes,
    )
    details = {"event_id": event.id, "generation": action.generation}
    await _success(run, action, code, started, request_id, details, saved)


async def _update(run: _Run, action: Update, started: float) -> None:
    target = _target(run, action)
    try:
        result = await run.client.update_event(
            action.mailbox, action.graph_event_id, action.changes
        )
    except ItemNotFound:
        # Deleted in Outlook: the row becomes a tombstone and the event is created anew.
        await run.database.run_unit(
            partial(repo.mark_deleted, target=target, graph_event_id=action.graph_event_id)
        )
        await _create(run, action.recreate, started)
        return
    saved = partial(
        repo.save_updated, target=target, event=result.value, field_hashes=action.field_hashes
    )
    details = {"event_id": action.graph_event_id, "fields": list(action.changed)}
    await _success(run, action, "updated", started, result.request_id, details, saved)


async def _delete(run: _Run, action: Delete, started: float) -> None:
    request_id: str | None = None
    if action.graph_event_id is not None:
        try:
            result = await run.client.delete_event(action.mailbox, action.graph_event_id)
            request_id = result.request_id
        except ItemNotFound as gone:
            request_id = gone.request_id
    else:
        found = await run.client.find_events_by_tag(action.mailbox, action.tag)
        request_id = found.request_id
        for event in found.value:
            if event.id not in run.known_ids:  # never the event another row still owns
                await _delete_quietly(run.client, action.mailbox, event.id)
    saved = partial(
        repo.mark_deleted, target=_target(run, action), graph_event_id=action.graph_event_id
    )
    details = {"event_id": action.graph_event_id, "reason": action.reason}
    await _success(run, action, "deleted", started, request_id, details, saved)


async def _delete_quietly(client: GraphClient, mailbox: str, event_id: str) -> None:
    try:
        await client.delete_event(mailbox, event_id)
    except ItemNotFound:
        pass


def _record(
    run: _Run,
    db: Statements,
    action: Action,
    *,
    status: str,
    code: str,
    params: dict[str, Any],
    duration_ms: int,
    request_id: str | None,
) -> str:
    """Add the history record of one action's outcome; returns its readable message."""
    text = message(code, run.locale, params)
    repo.add_record(
        db,
        _target(run, action),
        job_id=run.job_id,
        action=_KIND.get(type(action), "skip"),
        status=status,
        code=code,
        message=text,
        details=params,
        duration_ms=duration_ms,
        graph_request_id=request_id,
    )
    return text


async def _skip(run: _Run, action: Skip) -> None:
    # A detached event's history is the record of the Outlook change that detached it.
    if action.reason in ("canceled", "detached"):
        return
    params: dict[str, Any]
    if action.reason == "unmapped":
        if action.booking_resource_id in run.unmapped_recorded:
            return
        code, params = repo.UNMAPPED_CODE, {"employee": action.booking_resource_id}
    else:
        code, params = "unchanged", {"mailbox": action.mailbox}
    record = partial(
        _record,
        run,
        action=action,
        status="skipped",
        code=code,
        params=params,
        duration_ms=0,
        request_id=None,
    )
    await run.database.run_unit(record)


async def _success(
    run: _Run,
    action: Create | Update | Delete,
    code: str,
    started: float,
    request_id: str | None,
    details: dict[str, Any],
    saved: Callable[[Statements], None],
) -> None:
    """Persist a Graph write's outcome in one transaction: `saved` (the mapping row), its
    history record and the employee's success."""

    def unit(db: Statements) -> None:
        saved(db)
        _record(
            run,
            db,
            action,
            status="success",
            code=code,
            params={"mailbox": action.mailbox, **details},
            duration_ms=_ms(started),
            request_id=request_id,
        )
        repo.set_employee_status(
            db,
            connection_id=run.connection_id,
            booking_resource_id=action.booking_resource_id,
            now=utcnow(),
        )
        if run.complete is not None:
            run.complete(db)

    await run.database.run_unit(unit)
    if run.secret_rejected:
        # Entra took the secret after all: the connection no longer shows it as rejected.
        async with run.database.session_scope() as session:
            await secrets.clear_rejected(session, connection_id=run.connection_id)
        run.secret_rejected = False


async def _failed(run: _Run, action: Action, error: GraphError, started: float) -> None:
    mailbox = action.mailbox or ""
    code, params = error_code(error, mailbox=mailbox, tenant=run.tenant, client_id=run.client_id)
    if error.retryable:
        run.retry.append(error)
    else:
        run.permanent.append(f"{mailbox}: {code}")
    log.warning("sync.appointment %s → %s: %s (%s)", run.appointment_id, mailbox, code, error)
    status = "retrying" if error.retryable else "error"

    def unit(db: Statements) -> str:
        text = _record(
            run,
            db,
            action,
            status=status,
            code=code,
            params=params,
            duration_ms=_ms(started),
            request_id=error.request_id,
        )
        if not error.retryable:
            repo.set_employee_status(
                db,
                connection_id=run.connection_id,
                booking_resource_id=action.booking_resource_id,
                now=utcnow(),
                error_code=code,
                error_message=text,
            )
        return text

    async with run.database.session_scope() as session:
        await run_in_session(session, unit)
        await secrets.mark_rejected(session, connection_id=run.connection_id, code=code)


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
