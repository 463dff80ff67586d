"""Prometheus metrics: the process-local series, observed where things happen (webhook intake,
job runs, Graph requests, end-to-end lag), the gauges read from the database at scrape time
(queue, subscriptions, client secrets), and `GET /metrics`.

The hot paths call the small functions below: each is a dict lookup of a pre-bound child and an
`inc()` or `observe()`, no I/O. The database gauges are computed per scrape, in the async
handler, by a few indexed GROUP BY queries, so every API replica shows the same numbers whatever
process did the work. A `calbridge worker` serves its own process-local series with
`--metrics-port` (`serve_worker_metrics`).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import Response
from fastapi.security import HTTPAuthorizationCredentials
from prometheus_client import (
    REGISTRY,
    Counter,
    Histogram,
    disable_created_metrics,
    generate_latest,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import load_only

from app.admin.auth import bearer_scheme, require_admin
from app.config import Settings
from app.db import get_session
from app.models import Connection, Job, Subscription
from app.models.base import utcnow
from app.models.job import JOB_STATES
from app.problems import problem_responses
from app.queue.errors import PermanentError

# The classic text format: every Prometheus version parses it (generate_latest writes it).
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

SECRET_STATES = ("ok", "expiring", "expired", "rejected")
SUBSCRIPTION_STATES = ("pending", "active", "failed", "disabled")
LIVE_JOB_STATES = tuple(state for state in JOB_STATES if state != "done")

# --- process-local series ----------------------------------------------------------------------

# No `_created` sample beside every counter and histogram: it doubles a scrape and Prometheus
# detects counter resets without it.
disable_created_metrics()  # type: ignore[no-untyped-call]

WEBHOOKS = Counter(
    "calbridge_webhooks_received_total",
    "Webhooks received by this process, by source (bookingtime, graph_notifications, "
    "graph_lifecycle) and outcome. bookingtime counts deliveries: accepted, stale, ignored, "
    "duplicate, or the problem code it was refused with (invalid_signature, stale_timestamp, "
    "unknown_organization, validation_failed, ...). Graph counts notification items: accepted, "
    "or why an item was dropped (unknown_subscription, client_state, foreign_resource, ...); "
    "a request refused as a whole counts once under its problem code, a subscription "
    "handshake as validation.",
    ["source", "outcome"],
)
INTAKE_SECONDS = Histogram(
    "calbridge_bookingtime_intake_seconds",
    "Time the bookingtime webhook endpoint took, from its handler being called to the response "
    "(verification, parsing, the group-committed transaction), whatever the outcome.",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0),
)
JOB_SECONDS = Histogram(
    "calbridge_job_duration_seconds",
    "Run time of one job attempt's handler in this process, by kind and outcome: done, retry "
    "(will run again), failed (permanent error), dead (out of attempts).",
    ["kind", "outcome"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0),
)
GRAPH_REQUESTS = Counter(
    "calbridge_graph_requests_total",
    "Microsoft Graph requests sent by this process, by operation and status: the HTTP status, "
    "or timeout, connection_error, token_error when no Graph response came. Items of a $batch "
    "count again as operation batch_item with their own status.",
    ["operation", "status"],
)
GRAPH_THROTTLED = Counter(
    "calbridge_graph_throttled_total",
    "Graph answers 429 (throttled) by operation; also counted in calbridge_graph_requests_total.",
    ["operation"],
)
END_TO_END_LAG_SECONDS = Histogram(
    "calbridge_end_to_end_lag_seconds",
    "End-to-end lag per Outlook write (create, update, delete) of sync.appointment: from the "
    "receipt of the bookingtime delivery whose appointment snapshot the write carries (the "
    "snapshot's stored time, the same instant as that delivery's inbox_event.received_at) to "
    "the write's success being committed. Forced resyncs (the admin's resync, a restore) are "
    "not observed; a backfill or settings-change run counts from the snapshot's receipt too, so "
    "it shows as a long lag.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0),
)

_webhooks: dict[tuple[str, str], Counter] = {}
_jobs: dict[tuple[str, str], Histogram] = {}
_graph: dict[tuple[str, str, int | str], tuple[Counter, Counter | None]] = {}

#: Graph operations by (HTTP method, the client's error target): names of GraphClient's calls.
GRAPH_OPERATIONS = {
    ("POST", "events"): "create_event",
    ("GET", "events"): "find_events",
    ("GET", "event"): "get_event",
    ("PATCH", "event"): "update_event",
    ("DELETE", "event"): "delete_event",
    ("GET", "delta"): "delta",
    ("GET", "user"): "read_mailbox",
    ("POST", "user"): "create_subscription",
    ("GET", "subscription"): "get_subscription",
    ("PATCH", "subscription"): "renew_subscription",
    ("POST", "subscription"): "reauthorize_subscription",
    ("DELETE", "subscription"): "delete_subscription",
    ("GET", "other"): "list_subscriptions",
    ("POST", "batch"): "batch",
    ("POST", "batch_item"): "batch_item",
}
# Known label values start at 0, so a rate or an alert sees the series before the first event.
for _operation in GRAPH_OPERATIONS.values():
    GRAPH_THROTTLED.labels(_operation)
for _source in ("bookingtime", "graph_notifications", "graph_lifecycle"):
    _webhooks[(_source, "accepted")] = WEBHOOKS.labels(_source, "accepted")


def webhook_received(source: str, outcome: str, count: int = 1) -> None:
    """Count `count` webhooks (or notification items) of `source` with `outcome`."""
    child = _webhooks.get((source, outcome))
    if child is None:
        child = _webhooks[(source, outcome)] = WEBHOOKS.labels(source, outcome)
    child.inc(count)


def bookingtime_received(outcome: str, started: float) -> None:
    """One bookingtime delivery answered; `started` is its handler's `time.perf_counter()`."""
    INTAKE_SECONDS.observe(time.perf_counter() - started)
    webhook_received("bookingtime", outcome)


def graph_items_received(source: str, accepted: int, dropped: Iterable[tuple[str, int]]) -> None:
    """One Graph notification request's items: how many were accepted, how many dropped why."""
    if accepted:
        webhook_received(source, "accepted", accepted)
    for reason, count in dropped:
        webhook_received(source, reason, count)


def graph_response(method: str, target: str, status: int | str) -> None:
    """One Graph request answered with `status`, or ended without a Graph answer: `timeout`,
    `connection_error`, `token_error` (the token provider failed)."""
    key = (method, target, status)
    children = _graph.get(key)
    if children is None:
        operation = GRAPH_OPERATIONS.get((method, target), f"{method.lower()}_{target}")
        children = _graph[key] = (
            GRAPH_REQUESTS.labels(operation, str(status)),
            GRAPH_THROTTLED.labels(operation) if status == 429 else None,
        )
    requests, throttled = children
    requests.inc()
    if throttled is not None:
        throttled.inc()


def graph_batch_item(status: int) -> None:
    """One item of a `$batch` answered with `status`."""
    graph_response("POST", "batch_item", status)


async def timed_job(run: Awaitable[None], *, kind: str, last_attempt: bool) -> None:
    """Await a job handler's run and observe its duration by kind and outcome, the outcome the
    worker makes of it (a cancelled run, at shutdown, is not observed)."""
    started = time.perf_counter()
    try:
        await run
    except PermanentError:
        _job_ran(kind, "failed", started)
        raise
    except Exception:  # RetryAfter and any transient error: the worker retries
        _job_ran(kind, "dead" if last_attempt else "retry", started)
        raise
    _job_ran(kind, "done", started)


def _job_ran(kind: str, outcome: str, started: float) -> None:
    child = _jobs.get((kind, outcome))
    if child is None:
        child = _jobs[(kind, outcome)] = JOB_SECONDS.labels(kind, outcome)
    child.observe(time.perf_counter() - started)


def end_to_end_lag(received_at: datetime) -> None:
    """An Outlook write committed for a snapshot stored at `received_at`."""
    END_TO_END_LAG_SECONDS.observe(max(0.0, (utcnow() - received_at).total_seconds()))


def serve_worker_metrics(host: str, port: int) -> None:
    """Serve this process's series at http://host:port/metrics (a daemon thread)."""
    start_http_server(port, addr=host)


# --- database-derived gauges -------------------------------------------------------------------


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
    """Four short queries, each one GROUP BY or index range; nothing is locked."""
    # Imported here: app.connections imports the Graph client, which imports this module.
    from app.connections.secrets import secret_status

    state = DatabaseState(now=now)
    # Not `done`: those rows are history, the bulk of the table until pruned (their rate is
    # calbridge_job_duration_seconds_count); the other states are found through the state index.
    rows = await session.execute(
        select(Job.kind, Job.state, func.count())
        .where(Job.state.in_(LIVE_JOB_STATES))
        .group_by(Job.kind, Job.state)
    )
    state.jobs = [(kind, job_state, count) for kind, job_state, count in rows.all()]
    # ix_job_state_run_at_id: a range of the index, not a scan of done jobs.
    runnable = (
        await session.execute(
            select(func.count(), func.min(Job.run_at)).where(
                Job.state == "pending", Job.run_at <= now
            )
        )
    ).one()
    state.runnable, state.oldest_runnable_at = runnable[0], runnable[1]
    subscriptions = await session.execute(
        select(Subscription.state, func.count(), func.min(Subscription.expires_at)).group_by(
            Subscription.state
        )
    )
    state.subscriptions = {
        sub_state: (count, first) for sub_state, count, first in subscriptions.all()
    }
    connections = await session.scalars(
        select(Connection).options(
            load_only(
                Connection.organization_id,
                Connection.client_secret_expires_at,
                Connection.client_secret_rejected_at,
            )
        )
    )
    for connection in connections:
        status = secret_status(connection, now=now)
        state.secrets.append((connection.organization_id, status.state, status.days_left))
    return state


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


# --- GET /metrics ------------------------------------------------------------------------------

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
