"""All SQL of busy time: a mailbox's delta state, its busy blocks, the mapping rows a delta
page's items are matched against, and the employees' status a run writes (its history goes
through app.history.repository). Callers own the transactions."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, and_, delete, func, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.busy.blocks import BlockData
from app.busy.keys import mailbox_key
from app.models import (
    Appointment,
    BusyBlock,
    CalendarSync,
    Connection,
    Employee,
    EventMapping,
)

# --- connections and employees -----------------------------------------------------------------


async def connection(session: AsyncSession, connection_id: int) -> Connection | None:
    return await session.get(Connection, connection_id)


async def is_mapped(session: AsyncSession, connection_id: int, mailbox: str) -> bool:
    """Whether an employee of the connection is mapped to the mailbox."""
    found = await session.scalar(
        select(Employee.id)
        .where(
            Employee.connection_id == connection_id,
            func.lower(func.trim(Employee.mailbox)) == mailbox_key(mailbox),
        )
        .limit(1)
    )
    return found is not None


async def mapped_mailboxes(session: AsyncSession) -> list[tuple[int, str]]:
    """Every distinct (connection, mailbox) an employee is mapped to."""
    rows = await session.execute(
        select(Employee.connection_id, Employee.mailbox).order_by(
            Employee.connection_id, Employee.mailbox
        )
    )
    seen: dict[tuple[int, str], str] = {}
    for connection_id, mailbox in rows.all():
        seen.setdefault((connection_id, mailbox_key(mailbox)), mailbox)
    return [(connection_id, mailbox) for (connection_id, _), mailbox in seen.items()]


async def mailbox_employees(
    session: AsyncSession, *, connection_id: int, mailbox: str
) -> list[str]:
    """The booking-resource ids of the connection's employees mapped to the mailbox."""
    rows = await session.scalars(
        select(Employee.booking_resource_id)
        .where(
            Employee.connection_id == connection_id,
            func.lower(Employee.mailbox) == mailbox_key(mailbox),
        )
        .order_by(Employee.booking_resource_id)
    )
    return list(rows)


async def employees(session: AsyncSession, connection_id: int) -> dict[str, str]:
    """booking resource id → mailbox of the connection's employees."""
    rows = await session.execute(
        select(Employee.booking_resource_id, Employee.mailbox).where(
            Employee.connection_id == connection_id
        )
    )
    return {resource: mailbox for resource, mailbox in rows.all()}


async def set_employees_error(
    session: AsyncSession,
    connection_id: int,
    resources: Collection[str],
    *,
    code: str,
    message: str,
    now: datetime,
) -> None:
    """Show the error in these employees' status."""
    if not resources:
        return
    await session.execute(
        update(Employee)
        .where(
            Employee.connection_id == connection_id,
            Employee.booking_resource_id.in_(list(resources)),
        )
        .values(last_error_at=now, last_error_code=code, last_error_message=message, updated_at=now)
        .execution_options(synchronize_session=False)
    )


# --- delta state -------------------------------------------------------------------------------


async def sync_state(session: AsyncSession, connection_id: int, mailbox: str) -> CalendarSync:
    """The mailbox's delta state, added (empty: the next run is a full one) when there is none."""
    key = mailbox_key(mailbox)
    row = await session.scalar(
        select(CalendarSync).where(
            CalendarSync.connection_id == connection_id, CalendarSync.mailbox == key
        )
    )
    if row is None:
        row = CalendarSync(connection_id=connection_id, mailbox=key)
        session.add(row)
        await session.flush()
    return row


async def last_synced_at(
    session: AsyncSession, connection_id: int, mailbox: str
) -> datetime | None:
    return await session.scalar(
        select(CalendarSync.last_synced_at).where(
            CalendarSync.connection_id == connection_id,
            CalendarSync.mailbox == mailbox_key(mailbox),
        )
    )


# --- calbridge's own events ----------------------------------------------------------------------


async def mappings_by_event_id(
    session: AsyncSession, connection_id: int, event_ids: Collection[str]
) -> dict[str, EventMapping]:
    """The mapping rows (tombstones included) of these Graph event ids; the newest row wins."""
    if not event_ids:
        return {}
    rows = await session.scalars(
        select(EventMapping)
        .where(
            EventMapping.connection_id == connection_id,
            EventMapping.graph_event_id.in_(list(event_ids)),
        )
        .order_by(EventMapping.id)
    )
    return {row.graph_event_id: row for row in rows if row.graph_event_id is not None}


async def mailbox_mappings(
    session: AsyncSession, connection_id: int, mailbox: str
) -> list[EventMapping]:
    """Every mapping row of the mailbox, tombstones included."""
    rows = await session.scalars(
        select(EventMapping).where(
            EventMapping.connection_id == connection_id,
            func.lower(EventMapping.mailbox) == mailbox_key(mailbox),
        )
    )
    return list(rows)


async def live_rows(session: AsyncSession, connection_id: int, mailbox: str) -> list[EventMapping]:
    """calbridge's events in the mailbox as far as it knows: not deleted, not detached."""
    rows = await session.scalars(
        select(EventMapping).where(
            EventMapping.connection_id == connection_id,
            EventMapping.graph_event_id.is_not(None),
            EventMapping.deleted.is_(False),
            EventMapping.detached.is_(False),
        )
    )
    key = mailbox_key(mailbox)
    return [row for row in rows if mailbox_key(row.mailbox) == key]


async def snapshots(
    session: AsyncSession, connection_id: int, appointment_ids: Collection[str]
) -> dict[str, Appointment]:
    if not appointment_ids:
        return {}
    rows = await session.scalars(
        select(Appointment).where(
            Appointment.connection_id == connection_id,
            Appointment.appointment_id.in_(list(appointment_ids)),
        )
    )
    return {row.appointment_id: row for row in rows}


async def mapping_row(session: AsyncSession, row_id: int) -> EventMapping | None:
    return await session.get(EventMapping, row_id)


# --- busy blocks ---------------------------------------------------------------------------------


async def upsert_blocks(
    session: AsyncSession,
    connection_id: int,
    mailbox: str,
    blocks: Sequence[BlockData],
    *,
    seen_at: datetime,
) -> None:
    """Add or update each block; every block named is touched (`updated_at`), which is what a
    full round's pruning goes by."""
    if not blocks:
        return
    key = mailbox_key(mailbox)
    by_id = {block.graph_event_id: block for block in blocks}
    existing = {
        row.graph_event_id: row
        for row in await session.scalars(
            select(BusyBlock).where(
                BusyBlock.connection_id == connection_id,
                BusyBlock.mailbox == key,
                BusyBlock.graph_event_id.in_(list(by_id)),
            )
        )
    }
    for event_id, block in by_id.items():
        row = existing.get(event_id)
        if row is None:
            row = BusyBlock(connection_id=connection_id, mailbox=key, graph_event_id=event_id)
            session.add(row)
        row.series_master_id = block.series_master_id
        row.start_at = block.start_at
        row.end_at = block.end_at
        row.show_as = block.show_as
        row.is_all_day = block.is_all_day
        row.subject = block.subject
        row.updated_at = seen_at
    await session.flush()


async def delete_blocks(
    session: AsyncSession,
    connection_id: int,
    mailbox: str,
    event_ids: Collection[str],
) -> int:
    """Remove the blocks of these events, and of every occurrence of these series masters."""
    if not event_ids:
        return 0
    ids = list(event_ids)
    statement = delete(BusyBlock).where(
        BusyBlock.connection_id == connection_id,
        BusyBlock.mailbox == mailbox_key(mailbox),
        or_(BusyBlock.graph_event_id.in_(ids), BusyBlock.series_master_id.in_(ids)),
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    return result.rowcount


async def prune_blocks(
    session: AsyncSession, connection_id: int, mailbox: str, *, not_seen_since: datetime
) -> int:
    """After a full round: remove the blocks of events the round did not return."""
    statement = delete(BusyBlock).where(
        BusyBlock.connection_id == connection_id,
        BusyBlock.mailbox == mailbox_key(mailbox),
        BusyBlock.updated_at < not_seen_since,
    )
    result = cast(CursorResult[Any], await session.execute(statement))
    return result.rowcount


async def blocks_between(
    session: AsyncSession, connection_id: int, mailbox: str, start: datetime, end: datetime
) -> list[BusyBlock]:
    """The mailbox's blocks overlapping [start, end), by start; a zero-length one counts where
    it starts."""
    rows = await session.scalars(
        select(BusyBlock)
        .where(
            BusyBlock.connection_id == connection_id,
            BusyBlock.mailbox == mailbox_key(mailbox),
            BusyBlock.start_at < end,
            or_(
                BusyBlock.end_at > start,
                and_(BusyBlock.end_at == BusyBlock.start_at, BusyBlock.start_at >= start),
            ),
        )
        .order_by(BusyBlock.start_at, BusyBlock.end_at, BusyBlock.id)
    )
    return list(rows)
