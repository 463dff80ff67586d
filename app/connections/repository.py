"""Every query on `connection` and `employee`."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Connection


async def get_connection(session: AsyncSession, organization_id: str) -> Connection | None:
    """The connection of a bookingtime organisation, or None."""
    return await session.scalar(
        select(Connection).where(Connection.organization_id == organization_id)
    )
