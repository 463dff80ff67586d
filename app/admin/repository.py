"""Every query on `admin_token`."""

from __future__ import annotations

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import AdminToken


async def add_token(session: AsyncSession, token: AdminToken) -> None:
    """Insert a token (flushed, so its id and defaults are set)."""
    session.add(token)
    await session.flush()


async def list_tokens(session: AsyncSession, *, include_revoked: bool) -> list[AdminToken]:
    """Stored tokens (live ones unless `include_revoked`), oldest first."""
    query = select(AdminToken).order_by(AdminToken.id)
    if not include_revoked:
        query = query.where(AdminToken.revoked_at.is_(None))
    return list(await session.scalars(query))


async def live_tokens_named(session: AsyncSession, name_or_id: str) -> list[AdminToken]:
    """The live tokens named `name_or_id`, or with that id when it is a number."""
    match = AdminToken.name == name_or_id
    if name_or_id.isdigit():
        match = or_(match, AdminToken.id == int(name_or_id))
    return list(
        await session.scalars(select(AdminToken).where(match, AdminToken.revoked_at.is_(None)))
    )


async def live_token_by_hash(session: AsyncSession, token_hash: str) -> AdminToken | None:
    """The live token with this hash, or None."""
    return await session.scalar(
        select(AdminToken).where(
            AdminToken.token_hash == token_hash, AdminToken.revoked_at.is_(None)
        )
    )
