"""`GET /metrics`: this process's counters (app.counters) and the gauges read from the
database at scrape time (queue, subscriptions, client secrets), so every API replica shows the
same numbers whatever process did the work."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin import metrics_repository as repo
from app.admin.auth import bearer_scheme, require_admin
from app.config import Settings
from app.credentials.secrets import secret_status
from app.db import get_session
from app.http.problems import problem_responses
from app.models.base import utcnow

# The classic text format: every Prometheus version parses it (generate_latest writes it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

SECRET_STATES = ("ok", "expiring", "expired", "rejected")
SUBSCRIPTION_STATES = ("pending", "active", "failed", "disabled")


@dataclass
class DatabaseState:
    """What one scrape read from the database."""

    now: datetime
    jobs: list[tuple[str, str, int]] = field(default_factory=list)  # kind, state, count
    runnable: int = 0
    oldest_runnable_at: datetime | None = None
    subscriptions: dict[str, tuple[int, datetime | None]] = field(default_factory=dict)
    secrets: list[tuple[str, str, int | None]] = field(default_factory=list)  # org, state, days


async def read_database_state(session: AsyncSession, *, now: datetime) -> DatabaseState:
    """The gauges' figures at `now`: four short reads, nothing locked."""
    runnable, oldest_runnable_at = await repo.runnable_jobs(session, now=now)
    secrets: list[tuple[str, str, int | None]] = []
    for connection in await repo.connection_secrets(session):
        status = secret_status(connection, now=now)
        secrets.append((connection.organization_id, status.state, status.days_left))
    return DatabaseState(
        now=now,
        jobs=await repo.live_job_counts(session),
        runnable=runnable,
        oldest_runnable_at=oldest_runnable_at,
        subscriptions=await repo.subscriptions_by_state(session),
        secrets=secrets,
    )


@dataclass
class DatabaseCollector:
    """The gauges of one DatabaseState, for `generate_latest`."""

    state: DatabaseState

    def collect(self) -> Iterator[Metric]:
        state = self.state
        jobs = GaugeMetricFamily(
            "calbridge_jobs",
            "Jobs in the queue by kind and state: pending, running, failed, dead (done jobs are "
            "not counted; their rate is calbridge_job_duration_seconds_count).",
            labels=["kind", "state"],
        )
        pending = 0
        for kind, job_state, count in state.jobs:
            jobs.add_metric([kind, job_state], count)
            pending += count if job_state == "pending" else 0
        yield jobs
        yield GaugeMetricFamily(
            "calbridge_queue_pending_jobs",
            "Pending jobs, runnable now or scheduled for later (retries, periodic ticks).",
            value=pending,
        )
        yield GaugeMetricFamily(
            "calbridge_queue_runnable_jobs",
            "Pending jobs whose run_at has come: the backlog the workers have to claim.",
            value=state.runnable,
        )
        oldest = state.oldest_runnable_at
        yield GaugeMetricFamily(
            "calbridge_queue_oldest_pending_age_seconds",
            "Seconds the longest-waiting runnable pending job has been due (now - run_at); "
            "0 when none is due.",
            value=max(0.0, (state.now - oldest).total_seconds()) if oldest else 0.0,
        )
        subscriptions = GaugeMetricFamily(
            "calbridge_subscriptions",
            "Graph change-notification subscriptions by state (pending, active, failed, "
            "disabled: no CALBRIDGE_PUBLIC_URL).",
            labels=["state"],
        )
        for sub_state in sorted({*SUBSCRIPTION_STATES, *state.subscriptions}):
            subscriptions.add_metric([sub_state], state.subscriptions.get(sub_state, (0, None))[0])
        yield subscriptions
        next_expiry = GaugeMetricFamily(
            "calbridge_subscription_next_expiry_seconds",
            "Seconds until the earliest expiry of an active subscription (negative: overdue); "
            "no sample while no subscription is active.",
        )
        first = state.subscriptions.get("active", (0, None))[1]
        if first is not None:
            next_expiry.add_metric([], (first - state.now).total_seconds())
        yield next_expiry
        days = GaugeMetricFamily(
            "calbridge_connection_secret_days_left",
            "Whole days until a connection's Entra client secret expires (0 once expired); no "
            "sample for a connection without an expiry date.",
            labels=["organization_id"],
        )
        states = GaugeMetricFamily(
            "calbridge_connection_secret_state",
            "A connection's client-secret state: 1 for the current one of ok, expiring (30 days "
            "or less), expired, rejected (Entra refused it), 0 for the others.",
            labels=["organization_id", "state"],
        )
        for organization_id, secret_state, days_left in state.secrets:
            if days_left is not None:
                days.add_metric([organization_id], days_left)
            for candidate in SECRET_STATES:
                states.add_metric([organization_id, candidate], int(candidate == secret_state))
        yield days
        yield states


router = APIRouter(tags=["health"])

_DESCRIPTION = """
Prometheus metrics in the text exposition format: webhooks, intake latency, job runs, Graph
requests and end-to-end lag of this process, and queue, subscription and client-secret gauges
read from the database at scrape time. Needs an admin token (either role) unless
`CALBRIDGE_METRICS_PUBLIC=true`.
"""


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    description=_DESCRIPTION,
    response_class=Response,
    responses={
        200: {
            "description": "the metrics",
            "content": {"text/plain": {"schema": {"type": "string"}}},
        },
        **problem_responses(401, 429),
    },
)
async def metrics(
    request: Request,
    session: Annotated[AsyncSession, Depends(get_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Response:
    settings: Settings = request.app.state.settings
    if not settings.metrics_public:
        await require_admin(request, session, credentials)
    state = await read_database_state(session, now=utcnow())
    await session.rollback()  # read only: end the transaction before rendering
    body = generate_latest(REGISTRY) + generate_latest(DatabaseCollector(state))
    return Response(body, media_type=CONTENT_TYPE)
