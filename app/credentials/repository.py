"""Every query about a connection's credentials: the secret's expiry and Entra's rejection."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Connection


async def list_connections_with_expiry(session: AsyncSession) -> list[Connection]:
    """The connections whose client secret has a known expiry date, by id."""
    result = await session.scalars(
        select(Connection)
        .where(Connection.client_secret_expires_at.is_not(None))
        .order_by(Connection.id)
    )
    return list(result)


async def set_secret_rejected(
    session: AsyncSession, *, connection_id: int, code: str, at: datetime
) -> None:
    """Record that Entra refused the connection's client secret with `code`."""
    await session.execute(
        update(Connection)
        .where(Connection.id == connection_id)
        .values(client_secret_rejected_at=at, client_secret_rejected_code=code)
        .execution_options(synchronize_session=False)
    )


async def clear_secret_rejected(session: AsyncSession, *, connection_id: int) -> None:
    """Forget Entra's rejection of the connection's client secret, if one is recorded."""
    await session.execute(
        update(Connection)
        .where(Connection.id == connection_id, Connection.client_secret_rejected_at.is_not(None))
        .values(client_secret_rejected_at=None, client_secret_rejected_code=None)
        .execution_options(synchronize_session=False)
    )
