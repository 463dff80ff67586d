"""One employee's planned actions run against Graph, each outcome persisted right after its Graph
call in a short transaction of its own (mapping row, history record, employee status), so a
crash between two writes loses at most the one in flight, which its row makes safe to retry."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app import counters, logs
from app.credentials import secrets
from app.db import Database
from app.graph.client import GraphClient
from app.graph.errors import GraphError, ItemNotFound
from app.graph.schemas import Event
from app.history.messages import error_code, message
from app.models.base import utcnow
from app.sync import outcome_repository as outcome_repo
from app.sync import repository as repo
from app.sync.planner import Action, Create, Delete, Skip, Update

log = logging.getLogger(__name__)

_KIND: dict[type, str] = {Create: "create", Update: "update", Delete: "delete"}

#: Writes an action's mapping row in the outcome's transaction.
Save = Callable[[AsyncSession], Awaitable[None]]


@dataclass
class Run:
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
    retry: list[GraphError] = field(default_factory=list)
    permanent: list[str] = field(default_factory=list)

    def target(self, action: Action) -> outcome_repo.Target:
        return outcome_repo.Target(
            self.connection_id, self.appointment_id, action.booking_resource_id, action.mailbox
        )


async def run_employee(run: Run, actions: list[Action]) -> None:
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
            counters.end_to_end_lag(run.received_at)


async def _execute(run: Run, action: Action, started: float) -> None:
    if isinstance(action, Create):
        await _create(run, action, started, intent_written=True)
    elif isinstance(action, Update):
        await _update(run, action, started)
    elif isinstance(action, Delete):
        await _delete(run, action, started)
    else:
        await _skip(run, action)


async def _create(
    run: Run,
    action: Create,
    started: float,
    *,
    intent_written: bool = False,
    code: str = "created",
) -> None:
    target = run.target(action)
    if not intent_written:
        async with run.database.session_scope() as session:
            await outcome_repo.ensure_intent(session, target, generation=action.generation)
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
    saved_event = event

    async def save(session: AsyncSession) -> None:
        await outcome_repo.save_created(
            session,
            target,
            generation=action.generation,
            event=saved_event,
            field_hashes=action.field_hashes,
        )

    details = {"event_id": event.id, "generation": action.generation}
    await _success(run, action, code, started, request_id, details, save)


async def _update(run: Run, action: Update, started: float) -> None:
    target = run.target(action)
    try:
        result = await run.client.update_event(
            action.mailbox, action.graph_event_id, action.changes
        )
    except ItemNotFound:
        # Deleted in Outlook: the row becomes a tombstone and the event is created anew.
        async with run.database.session_scope() as session:
            await outcome_repo.mark_deleted(session, target, graph_event_id=action.graph_event_id)
        await _create(run, action.recreate, started)
        return

    async def save(session: AsyncSession) -> None:
        await outcome_repo.save_updated(
            session, target, event=result.value, field_hashes=action.field_hashes
        )

    details = {"event_id": action.graph_event_id, "fields": list(action.changed)}
    await _success(run, action, "updated", started, result.request_id, details, save)


async def _delete(run: Run, action: Delete, started: float) -> None:
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

    async def save(session: AsyncSession) -> None:
        await outcome_repo.mark_deleted(
            session, run.target(action), graph_event_id=action.graph_event_id
        )

    details = {"event_id": action.graph_event_id, "reason": action.reason}
    await _success(run, action, "deleted", started, request_id, details, save)


async def _delete_quietly(client: GraphClient, mailbox: str, event_id: str) -> None:
    try:
        await client.delete_event(mailbox, event_id)
    except ItemNotFound:
        pass


async def _record(
    run: Run,
    session: AsyncSession,
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
    await outcome_repo.add_record(
        session,
        run.target(action),
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


# History records of unmapped employees written per transaction: an appointment at the payload's
# limit lists a hundred employees, and on SQLite a transaction runs on the event loop's thread.
UNMAPPED_CHUNK = 20


async def record_unmapped(run: Run, skips: list[Skip]) -> None:
    """The `unmapped` records of many employees, a few per transaction, the loop free between
    them: one record, each in its own transaction, would hold the loop for all of them."""
    pending = [s for s in skips if s.booking_resource_id not in run.unmapped_recorded]
    for start in range(0, len(pending), UNMAPPED_CHUNK):
        if start:
            await asyncio.sleep(0)  # let the loop serve others between two transactions
        async with run.database.session_scope() as session:
            for action in pending[start : start + UNMAPPED_CHUNK]:
                await _record(
                    run,
                    session,
                    action,
                    status="skipped",
                    code=repo.UNMAPPED_CODE,
                    params={"employee": action.booking_resource_id},
                    duration_ms=0,
                    request_id=None,
                )


async def _skip(run: Run, action: Skip) -> None:
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
    async with run.database.session_scope() as session:
        await _record(
            run,
            session,
            action,
            status="skipped",
            code=code,
            params=params,
            duration_ms=0,
            request_id=None,
        )


async def _success(
    run: Run,
    action: Create | Update | Delete,
    code: str,
    started: float,
    request_id: str | None,
    details: dict[str, Any],
    save: Save,
) -> None:
    """Persist a Graph write's outcome in one transaction: the mapping row, its history record
    and the employee's success (and, after a rejected secret, that Entra took it after all)."""
    async with run.database.session_scope() as session:
        await save(session)
        await _record(
            run,
            session,
            action,
            status="success",
            code=code,
            params={"mailbox": action.mailbox, **details},
            duration_ms=_ms(started),
            request_id=request_id,
        )
        await outcome_repo.set_employee_status(
            session,
            connection_id=run.connection_id,
            booking_resource_id=action.booking_resource_id,
            now=utcnow(),
        )
        if run.secret_rejected:
            await secrets.clear_rejected(session, connection_id=run.connection_id)
    run.secret_rejected = False


async def _failed(run: Run, action: Action, error: GraphError, started: float) -> None:
    mailbox = action.mailbox or ""
    code, params = error_code(error, mailbox=mailbox, tenant=run.tenant, client_id=run.client_id)
    if error.retryable:
        run.retry.append(error)
    else:
        run.permanent.append(f"{mailbox}: {code}")
    log.warning("sync.appointment %s → %s: %s (%s)", run.appointment_id, mailbox, code, error)
    async with run.database.session_scope() as session:
        text = await _record(
            run,
            session,
            action,
            status="retrying" if error.retryable else "error",
            code=code,
            params=params,
            duration_ms=_ms(started),
            request_id=error.request_id,
        )
        if not error.retryable:
            await outcome_repo.set_employee_status(
                session,
                connection_id=run.connection_id,
                booking_resource_id=action.booking_resource_id,
                now=utcnow(),
                error_code=code,
                error_message=text,
            )
        await secrets.mark_rejected(session, connection_id=run.connection_id, code=code)


def _ms(started: float) -> int:
    return round((time.monotonic() - started) * 1000)
