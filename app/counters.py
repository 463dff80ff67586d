"""Process-local Prometheus series: webhooks received, intake latency, job runs, Graph requests
and end-to-end lag, observed where things happen. A leaf module: graph/ and queue/ count through
it without loading the database or the admin surface.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Iterable
from datetime import UTC, datetime

from prometheus_client import Counter, Histogram, disable_created_metrics, start_http_server

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
    "(verification, parsing, the transaction), whatever the outcome.",
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
    WEBHOOKS.labels(_source, "accepted")


def webhook_received(source: str, outcome: str, count: int = 1) -> None:
    """Count `count` webhooks (or notification items) of `source` with `outcome`."""
    WEBHOOKS.labels(source, outcome).inc(count)


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
    operation = GRAPH_OPERATIONS.get((method, target), f"{method.lower()}_{target}")
    GRAPH_REQUESTS.labels(operation, str(status)).inc()
    if status == 429:
        GRAPH_THROTTLED.labels(operation).inc()


def graph_batch_item(status: int) -> None:
    """One item of a `$batch` answered with `status`."""
    graph_response("POST", "batch_item", status)


async def timed_job(run: Awaitable[None], *, kind: str, last_attempt: bool) -> None:
    """Await a job handler's run and observe its duration by kind and outcome, the outcome the
    worker makes of it (a cancelled run, at shutdown, is not observed)."""
    started = time.perf_counter()
    try:
        await run
    except Exception as exc:
        # The queue's retry protocol, read by duck typing: this module imports nothing above it.
        if getattr(exc, "permanent", False) is True:
            outcome = "failed"
        else:
            outcome = "dead" if last_attempt else "retry"
        JOB_SECONDS.labels(kind, outcome).observe(time.perf_counter() - started)
        raise
    JOB_SECONDS.labels(kind, "done").observe(time.perf_counter() - started)


def end_to_end_lag(received_at: datetime) -> None:
    """An Outlook write committed for a snapshot stored at `received_at`."""
    lag = (datetime.now(UTC) - received_at).total_seconds()
    END_TO_END_LAG_SECONDS.observe(max(0.0, lag))


def serve_worker_metrics(host: str, port: int) -> None:
    """Serve this process's series at http://host:port/metrics (a daemon thread)."""
    start_http_server(port, addr=host)
