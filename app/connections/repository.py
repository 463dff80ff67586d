"""Every query on `connection` and `employee`, and the history records the secret lifecycle adds."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Connection, Employee, EventMapping


async def get_connection(session: AsyncSession, organization_id: str) -> Connection | None:
    """The connection of a bookingtime organisation, or None."""
    return await session.scalar(
        select(Connection).where(Connection.organization_id == organization_id)
    )


async def get_connection_by_id(session: AsyncSession, connection_id: int) -> Connection | None:
    """A connection by its id, or None."""
    return await session.get(Connection, connection_id)


async def count_employees(session: AsyncSession, *, connection_id: int) -> int:
    """How many employees a connection maps."""
    count = await session.scalar(
        select(func.count(Employee.id)).where(Employee.connection_id == connection_id)
    )
    return count or 0


async def list_connections_with_counts(session: AsyncSession) -> list[tuple[Connection, int]]:
    """Every connection with its employee count, ordered by organisation id."""
    employee_count = (
        select(func.count(Employee.id))
        .where(Employee.connection_id == Connection.id)
        .correlate(Connection)
        .scalar_subquery()
    )
    result = await session.execute(
        select(Connection, employee_count).order_by(Connection.organization_id)
    )
    return [(connection, count) for connection, count in result]


async def set_bookingtime_state(
    session: AsyncSession,
    *,
    connection_id: int,
    client_id: str,
    secret_encrypted: str,
    values: dict[str, Any],
) -> bool:
    """Record what a check of the bookingtime app found, unless its credentials changed since
    (the verdict was about the old ones); whether it was recorded."""
    result = await session.execute(
        update(Connection)
        .where(
            Connection.id == connection_id,
            Connection.bookingtime_client_id == client_id,
            Connection.bookingtime_client_secret_encrypted == secret_encrypted,
        )
        # A check is no edit of the connection: `updated_at` stays.
        .values(updated_at=Connection.updated_at, **values)
        .execution_options(synchronize_session="fetch")
    )
    return bool(getattr(result, "rowcount", 0))


async def add_connection(session: AsyncSession, connection: Connection) -> None:
    """Insert a connection (flushed, so a duplicate organisation raises IntegrityError here)."""
    session.add(connection)
    await session.flush()


async def delete_connection(session: AsyncSession, connection: Connection) -> None:
    """Delete a connection; the database cascades to its employees, snapshots, inbox and history."""
    await session.delete(connection)
    await session.flush()


async def get_employee(
    session: AsyncSession, *, connection_id: int, booking_resource_id: str
) -> Employee | None:
    """One employee of a connection by bookingtime booking-resource id, or None."""
    return await session.scalar(
        select(Employee).where(
            Employee.connection_id == connection_id,
            Employee.booking_resource_id == booking_resource_id,
        )
    )


async def get_employee_by_id(session: AsyncSession, employee_id: int) -> Employee | None:
    """An employee by its id, or None."""
    return await session.get(Employee, employee_id)


async def list_employees(session: AsyncSession, *, connection_id: int) -> list[Employee]:
    """Every employee of a connection, ordered by booking-resource id."""
    result = await session.scalars(
        select(Employee)
        .where(Employee.connection_id == connection_id)
        .order_by(Employee.booking_resource_id)
    )
    return list(result)


async def add_employee(session: AsyncSession, employee: Employee) -> None:
    """Insert an employee (flushed, so a duplicate raises IntegrityError here)."""
    session.add(employee)
    await session.flush()


async def delete_employee(session: AsyncSession, employee: Employee) -> None:
    """Delete an employee mapping (its sync history stays: it holds plain ids)."""
    await session.delete(employee)
    await session.flush()


async def count_live_events(
    session: AsyncSession, *, connection_id: int, booking_resource_id: str
) -> int:
    """How many Outlook events calbridge holds (or may hold) for the employee."""
    count = await session.scalar(
        select(func.count())
        .select_from(EventMapping)
        .where(
            EventMapping.connection_id == connection_id,
            EventMapping.booking_resource_id == booking_resource_id,
            EventMapping.deleted.is_(False),
        )
    )
    return int(count or 0)
