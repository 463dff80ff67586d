"""Every query that reads `sync_record`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Connection, SyncRecord


async def list_sync_records(
    session: AsyncSession,
    *,
    connection_id: int | None = None,
    booking_resource_id: str | None = None,
    appointment_id: str | None = None,
    status: str | None = None,
    before_id: int | None = None,
    limit: int,
) -> list[tuple[SyncRecord, str]]:
    """Up to `limit` records, newest (highest id) first, each with its organisation id."""
    query = select(SyncRecord, Connection.organization_id).join(
        Connection, Connection.id == SyncRecord.connection_id
    )
    if connection_id is not None:
        query = query.where(SyncRecord.connection_id == connection_id)
    if booking_resource_id is not None:
        query = query.where(SyncRecord.booking_resource_id == booking_resource_id)
    if appointment_id is not None:
        query = query.where(SyncRecord.appointment_id == appointment_id)
    if status is not None:
        query = query.where(SyncRecord.status == status)
    if before_id is not None:
        query = query.where(SyncRecord.id < before_id)
    result = await session.execute(query.order_by(SyncRecord.id.desc()).limit(limit))
    return [(record, organization_id) for record, organization_id in result]


def add_record(session: AsyncSession, record: SyncRecord) -> None:
    """Add a sync history record to the caller's transaction."""
    session.add(record)
