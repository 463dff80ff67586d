"""Every query of the job queue lives here."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import Job
from app.models.base import utcnow

_PENDING = text("state = 'pending'")


async def enqueue(
    session: AsyncSession,
    kind: str,
    args: dict[str, Any] | None = None,
    *,
    dedupe_key: str | None = None,
    serial_key: str | None = None,
    mailbox: str | None = None,
    run_at: datetime | None = None,
    max_attempts: int | None = None,
) -> int | None:
    """Add a job in the caller's transaction; None when a pending job has the same dedupe key."""
    now = utcnow()
    values: dict[str, Any] = {
        "kind": kind,
        "args": args or {},
        "state": "pending",
        "run_at": run_at or now,
        "attempts": 0,
        "max_attempts": max_attempts,
        "dedupe_key": dedupe_key,
        "serial_key": serial_key,
        "mailbox": mailbox,
        "created_at": now,
    }
    dialect = session.get_bind().dialect.name
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    statement = (
        insert(Job)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["dedupe_key"], index_where=_PENDING)
        .returning(Job.id)
    )
    return (await session.execute(statement)).scalar_one_or_none()
