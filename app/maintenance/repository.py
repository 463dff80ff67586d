"""Every query of the prune: the oldest inbox events and sync history records, in batches."""

from __future__ import annotations

from datetime import datetime
from typing import Any, cast

from sqlalchemy import CursorResult, delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import InboxEvent, SyncRecord


async def prune_inbox_events(
    session: AsyncSession, *, received_before: datetime, limit: int
) -> int:
    """Delete up to `limit` inbox events received before the cutoff, oldest first; how many."""
    return await _prune_oldest(session, InboxEvent, InboxEvent.received_at, received_before, limit)


async def prune_sync_records(session: AsyncSession, *, created_before: datetime, limit: int) -> int:
    """Delete up to `limit` sync history records created before the cutoff, oldest first."""
    return await _prune_oldest(session, SyncRecord, SyncRecord.created_at, created_before, limit)


async def _prune_oldest(
    session: AsyncSession,
    model: type[InboxEvent] | type[SyncRecord],
    stamp: Any,
    before: datetime,
    limit: int,
) -> int:
    # Both tables are append-only and their ids grow with time: when the lowest id is young
    # enough nothing is due, and the table is not scanned at all.
    first = await session.scalar(select(stamp).order_by(model.id).limit(1))
    if first is None or first >= before:
        return 0
    doomed = select(model.id).where(stamp < before).order_by(model.id).limit(limit)
    statement = (
        delete(model)
        .where(model.id.in_(doomed.scalar_subquery()))
        .execution_options(synchronize_session=False)
    )
    return cast(CursorResult[Any], await session.execute(statement)).rowcount
