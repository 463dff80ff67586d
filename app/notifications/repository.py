"""All SQL of Graph subscriptions: the `subscription` rows, the employees that keep a mailbox's
subscription alive and the notification intake's writes. Callers own the transactions."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.busy.keys import mailbox_key
from app.busy.repository import mailbox_employees as mailbox_employees
from app.models import Connection, Subscription


async def get(session: AsyncSession, *, connection_id: int, mailbox: str) -> Subscription | None:
    return await session.scalar(
        select(Subscription).where(
            Subscription.connection_id == connection_id,
            Subscription.mailbox == mailbox_key(mailbox),
        )
    )


async def get_by_id(session: AsyncSession, subscription_id: int) -> Subscription | None:
    return await session.get(Subscription, subscription_id)


async def get_or_add(session: AsyncSession, *, connection_id: int, mailbox: str) -> Subscription:
    row = await get(session, connection_id=connection_id, mailbox=mailbox)
    if row is None:
        row = Subscription(connection_id=connection_id, mailbox=mailbox_key(mailbox))
        row.state = "pending"
        session.add(row)
        await session.flush()
    return row


async def for_mailboxes(
    session: AsyncSession, *, connection_id: int, mailboxes: Iterable[str]
) -> dict[str, Subscription]:
    """The connection's subscriptions of these mailboxes, by mailbox (lowercase)."""
    keys = {mailbox_key(m) for m in mailboxes}
    if not keys:
        return {}
    rows = await session.scalars(
        select(Subscription).where(
            Subscription.connection_id == connection_id, Subscription.mailbox.in_(keys)
        )
    )
    return {row.mailbox: row for row in rows}


async def for_connection(session: AsyncSession, *, connection_id: int) -> list[Subscription]:
    """Every subscription row of the connection, by id."""
    rows = await session.scalars(
        select(Subscription)
        .where(Subscription.connection_id == connection_id)
        .order_by(Subscription.id)
    )
    return list(rows)


async def all_rows(session: AsyncSession) -> list[Subscription]:
    return list(await session.scalars(select(Subscription).order_by(Subscription.id)))


async def connection(session: AsyncSession, connection_id: int) -> Connection | None:
    return await session.get(Connection, connection_id)


async def delete(session: AsyncSession, row: Subscription) -> None:
    await session.delete(row)
    await session.flush()


async def list_page(
    session: AsyncSession,
    *,
    organization_id: str | None,
    before_id: int | None,
    limit: int,
) -> list[tuple[Subscription, str]]:
    """Subscriptions with their organisation id, newest first (by id)."""
    query = select(Subscription, Connection.organization_id).join(
        Connection, Connection.id == Subscription.connection_id
    )
    if organization_id is not None:
        query = query.where(Connection.organization_id == organization_id)
    if before_id is not None:
        query = query.where(Subscription.id < before_id)
    rows = await session.execute(query.order_by(Subscription.id.desc()).limit(limit))
    return [(row, org) for row, org in rows.all()]


# --- the notification intake ---------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KnownSubscription:
    """What the notification endpoint needs of one subscription, kept in memory briefly."""

    id: int
    connection_id: int
    mailbox: str
    graph_user_id: str | None
    tenant: str
    client_state_encrypted: str | None


async def find_by_graph_ids(
    session: AsyncSession, graph_ids: Sequence[str]
) -> dict[str, KnownSubscription]:
    if not graph_ids:
        return {}
    rows = await session.execute(
        select(
            Subscription.graph_subscription_id,
            Subscription.id,
            Subscription.connection_id,
            Subscription.mailbox,
            Subscription.graph_user_id,
            Connection.tenant,
            Subscription.client_state_encrypted,
        )
        .join(Connection, Connection.id == Subscription.connection_id)
        .where(Subscription.graph_subscription_id.in_(list(graph_ids)))
    )
    return {
        str(graph_id): KnownSubscription(
            id=row_id,
            connection_id=connection_id,
            mailbox=mailbox,
            graph_user_id=user_id,
            tenant=tenant,
            client_state_encrypted=state,
        )
        for graph_id, row_id, connection_id, mailbox, user_id, tenant, state in rows.all()
    }


async def learn_owners(session: AsyncSession, learned: dict[int, str]) -> None:
    """Store mailbox owners' object ids seen for the first time (subscription row → id)."""
    for row_id, user_id in learned.items():
        await session.execute(
            update(Subscription)
            .where(Subscription.id == row_id, Subscription.graph_user_id.is_(None))
            .values(graph_user_id=user_id)
            .execution_options(synchronize_session=False)
        )


async def stamp_notified(session: AsyncSession, row_ids: Iterable[int], at: datetime) -> None:
    """Set `last_notification_at`; one statement, since one request's stamps lie milliseconds
    apart."""
    ids = sorted(row_ids)
    if not ids:
        return
    await session.execute(
        update(Subscription)
        .where(Subscription.id.in_(ids))
        # A notification is no change of the subscription: `updated_at` stays.
        .values(last_notification_at=at, updated_at=Subscription.updated_at)
        .execution_options(synchronize_session=False)
    )
