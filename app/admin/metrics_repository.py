"""The queries behind the `/metrics` database gauges: short GROUP BY or index-range reads."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only

from app.models import Connection, Job, Subscription
from app.models.job import JOB_STATES

# Not `done`: those rows are history, the bulk of the table until pruned (their rate is
# calbridge_job_duration_seconds_count); the other states are found through the state index.
LIVE_JOB_STATES = tuple(state for state in JOB_STATES if state != "done")


async def live_job_counts(session: AsyncSession) -> list[tuple[str, str, int]]:
    """(kind, state, count) of every job that is not done."""
    rows = await session.execute(
        select(Job.kind, Job.state, func.count())
        .where(Job.state.in_(LIVE_JOB_STATES))
        .group_by(Job.kind, Job.state)
    )
    return [(kind, state, count) for kind, state, count in rows.all()]


async def runnable_jobs(session: AsyncSession, *, now: datetime) -> tuple[int, datetime | None]:
    """How many pending jobs are due at `now`, and the earliest `run_at` among them."""
    # ix_job_state_run_at_id: a range of the index, not a scan of done jobs.
    row = (
        await session.execute(
            select(func.count(), func.min(Job.run_at)).where(
                Job.state == "pending", Job.run_at <= now
            )
        )
    ).one()
    return row[0], row[1]


async def subscriptions_by_state(
    session: AsyncSession,
) -> dict[str, tuple[int, datetime | None]]:
    """Per subscription state: how many, and the earliest expiry."""
    rows = await session.execute(
        select(Subscription.state, func.count(), func.min(Subscription.expires_at)).group_by(
            Subscription.state
        )
    )
    return {state: (count, first) for state, count, first in rows.all()}


async def connection_secrets(session: AsyncSession) -> Sequence[Connection]:
    """Every connection, loaded with only what its client-secret state needs."""
    connections = await session.scalars(
        select(Connection).options(
            load_only(
                Connection.organization_id,
                Connection.client_secret_expires_at,
                Connection.client_secret_rejected_at,
            )
        )
    )
    return connections.all()
