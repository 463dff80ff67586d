"""Sync history queries for the admin API. Never commits."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncSession

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
    connection_id: int | None = None,
    employee_id: str | None = None,
    appointment_id: str | None = None,
    status: str | None = None,
    before_id: int | None = None,
    limit: int,
) -> HistoryPage:
    """Records newest first, filtered by connection, employee, appointment and outcome."""
    # One extra row tells whether another page follows without a COUNT.
    rows = await repository.list_sync_records(
        session,
        connection_id=connection_id,
        booking_resource_id=employee_id,
        appointment_id=appointment_id,
        status=status,
        before_id=before_id,
        limit=limit + 1,
    )
    if len(rows) > limit:
        rows = rows[:limit]
        return HistoryPage(rows, rows[-1][0].id)
    return HistoryPage(rows, None)
