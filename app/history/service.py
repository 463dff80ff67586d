"""Sync history queries for the admin API. Never commits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

from app.connections import service as connections
from app.history import repository
from app.models import SyncRecord


@dataclass(frozen=True)
class HistoryPage:
    """One page of records (each with its organisation id) and the id to continue below."""

    records: list[tuple[SyncRecord, str]]
    next_before_id: int | None


async def list_sync_history(
    session: AsyncSession,
    *,
    organization_id: str | None = None,
    employee_id: str | None = None,
    status: str | None = None,
    before_id: int | None = None,
    limit: int,
) -> HistoryPage:
    """Records newest first, filtered; an unknown organisation is ConnectionNotFoundError."""
    connection_id = None
    if organization_id is not None:
        connection = await connections.get_connection(session, organization_id=organization_id)
        connection_id = connection.id
    # One extra row tells whether another page follows without a COUNT.
    rows = await repository.list_sync_records(
        session,
        connection_id=connection_id,
        booking_resource_id=employee_id,
        status=status,
        before_id=before_id,
        limit=limit + 1,
    )
    if len(rows) > limit:
        rows = rows[:limit]
        return HistoryPage(rows, rows[-1][0].id)
    return HistoryPage(rows, None)
