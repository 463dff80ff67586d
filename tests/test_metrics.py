"""`GET /metrics`: access, the process-local series moving by the right amounts through a signed
webhook and a worker run against the sandbox, and the database gauges, on SQLite and PostgreSQL.

The process-local series are process-wide, so each test compares a scrape before with one after.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from prometheus_client import REGISTRY, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import select

from app import counters
from app.admin.auth import create_token
from app.busy.tasks import MAILBOX_SWEEP
from app.config import Settings, WorkerSettings
from app.crypto import SecretBox
from app.db import Database
from app.main import create_app
from app.models import Connection, Job, Subscription
from app.queue.errors import PermanentError, RetryAfter
from tests.bookingtime.helpers import ORGANIZATION_ID as ORG
from tests.bookingtime.helpers import WEBHOOK_SECRET, Sender, encode, sign
from tests.conftest import ADMIN_TOKEN
from tests.helpers import assert_problem, eventually
from tests.sync.samples import appointment
from tests.world import MakeWorld
from tests.world import World as BaseWorld

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
MAX = "max@contoso.example"
MAX_ID = "brMax000000000000000000000000000"
APPOINTMENT_ID = "edMetrics000000000000000000000001"
SETTLE_TIMEOUT = 20.0

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape by (name, labels); raises if the text does not parse."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def scrape(client: httpx.AsyncClient, headers: dict[str, str] | None = None) -> Samples:
    response = await client.get("/metrics", headers=HEADERS if headers is None else headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    return parse(response.text)


# --- access ------------------------------------------------------------------------------------


async def test_scrape_needs_an_admin_token_of_either_role(
    client: httpx.AsyncClient, database: Database
) -> None:
    anonymous = await client.get("/metrics")
    assert_problem(anonymous, 401, "unauthorized")
    wrong = await client.get("/metrics", headers={"Authorization": "Bearer nope"})
    assert wrong.status_code == 401

    async with database.session_scope() as session:
        read_token = await create_token(session, name="prometheus", role="read")
    samples = await scrape(client, {"Authorization": f"Bearer {read_token}"})
    assert ("calbridge_queue_runnable_jobs", frozenset()) in samples
    samples = await scrape(client)
    assert ("calbridge_bookingtime_intake_seconds_count", frozenset()) in samples


async def test_public_scrape_when_configured(
    settings: Settings, database: Database, secret_box: SecretBox
) -> None:
    public = settings.model_copy(update={"metrics_public": True})
    application = create_app(public, database=database, secret_box=secret_box)
    async with (
        application.router.lifespan_context(application),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=application), base_url="http://calbridge.test"
        ) as client,
    ):
        samples = await scrape(client, headers={})
    assert value(samples, "calbridge_queue_pending_jobs") == 0


def test_the_setting_reads_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings(_env_file=None).metrics_public is False  # type: ignore[call-arg]
    monkeypatch.setenv("CALBRIDGE_METRICS_PUBLIC", "true")
    assert Settings(_env_file=None).metrics_public is True  # type: ignore[call-arg]


# --- database gauges ---------------------------------------------------------------------------


def _connection(box: SecretBox, organization_id: str, **fields: Any) -> Connection:
    return Connection(
        organization_id=organization_id,
        tenant="contoso.example",
        client_id="00000000-0000-0000-0000-000000000001",
        client_secret_encrypted=box.encrypt("secret"),
        webhook_secret_encrypted=box.encrypt(WEBHOOK_SECRET),
        **fields,
    )


async def test_database_gauges_reflect_jobs_subscriptions_and_secrets(
    client: httpx.AsyncClient, database: Database, secret_box: SecretBox
) -> None:
    now = datetime.now(UTC)
    async with database.session_scope() as session:
        expiring = _connection(
            secret_box, "orgExpiring", client_secret_expires_at=now + timedelta(days=5, hours=2)
        )
        rejected = _connection(
            secret_box,
            "orgRejected",
            client_secret_expires_at=now + timedelta(days=90, hours=2),
            client_secret_rejected_at=now,
            client_secret_rejected_code="secret_invalid",
        )
        undated = _connection(secret_box, "orgUndated")
        expired = _connection(
            secret_box, "orgExpired", client_secret_expires_at=now - timedelta(days=2)
        )
        session.add_all([expiring, rejected, undated, expired])
        await session.flush()
        session.add_all(
            [
                Job(kind="sync.appointment", state="pending", run_at=now - timedelta(seconds=120)),
                Job(kind="sync.appointment", state="pending", run_at=now - timedelta(seconds=5)),
                Job(kind="sync.appointment", state="pending", run_at=now + timedelta(hours=1)),
                Job(kind="sync.appointment", state="done", run_at=now - timedelta(hours=1)),
                Job(kind="sync.appointment", state="done", run_at=now - timedelta(hours=1)),
                Job(kind="sync.mailbox", state="dead", run_at=now - timedelta(hours=1)),
                Job(kind="sync.mailbox", state="running", run_at=now - timedelta(minutes=1)),
            ]
        )
        for mailbox, state, expires_at in (
            ("a@contoso.example", "active", now + timedelta(hours=2)),
            ("b@contoso.example", "active", now + timedelta(hours=1)),
            ("c@contoso.example", "failed", None),
            ("d@contoso.example", "disabled", None),
        ):
            session.add(
                Subscription(
                    connection_id=expiring.id, mailbox=mailbox, state=state, expires_at=expires_at
                )
            )

    samples = await scrape(client)

    def jobs(kind: str, state: str) -> float:
        return value(samples, "calbridge_jobs", kind=kind, state=state)

    assert jobs("sync.appointment", "pending") == 3
    assert ("calbridge_jobs", frozenset({("kind", "sync.appointment"), ("state", "done")})) not in (
        samples
    )
    assert jobs("sync.mailbox", "dead") == 1
    assert jobs("sync.mailbox", "running") == 1
    assert value(samples, "calbridge_queue_pending_jobs") == 3
    assert value(samples, "calbridge_queue_runnable_jobs") == 2
    assert 119 <= value(samples, "calbridge_queue_oldest_pending_age_seconds") < 180

    assert value(samples, "calbridge_subscriptions", state="active") == 2
    assert value(samples, "calbridge_subscriptions", state="failed") == 1
    assert value(samples, "calbridge_subscriptions", state="disabled") == 1
    assert ("calbridge_subscriptions", frozenset({("state", "pending")})) in samples
    assert 3500 < value(samples, "calbridge_subscription_next_expiry_seconds") <= 3600

    def days(org: str) -> float | None:
        return samples.get(
            ("calbridge_connection_secret_days_left", frozenset({("organization_id", org)}))
        )

    def secret_state(org: str) -> str:
        [current] = [
            state
            for state in ("ok", "expiring", "expired", "rejected")
            if value(samples, "calbridge_connection_secret_state", organization_id=org, state=state)
            == 1
        ]
        return current

    assert days("orgExpiring") == 5
    assert secret_state("orgExpiring") == "expiring"
    assert days("orgRejected") == 90
    assert secret_state("orgRejected") == "rejected"
    assert days("orgUndated") is None
    assert secret_state("orgUndated") == "ok"
    assert days("orgExpired") == 0
    assert secret_state("orgExpired") == "expired"


async def test_no_next_expiry_sample_without_an_active_subscription(
    client: httpx.AsyncClient,
) -> None:
    samples = await scrape(client)
    assert not [key for key in samples if key[0] == "calbridge_subscription_next_expiry_seconds"]
    assert value(samples, "calbridge_queue_oldest_pending_age_seconds") == 0


# --- webhooks, worker, Graph, lag --------------------------------------------------------------


@dataclass
class World(BaseWorld):
    """The shared world with the job worker running, driven in-process."""

    async def settle(self) -> None:
        async def idle() -> bool:
            async with self.database.session() as session:
                busy = await session.scalars(
                    select(Job.id).where(
                        Job.kind.like("sync.%"),
                        Job.kind != MAILBOX_SWEEP,
                        Job.state.in_(("pending", "running")),
                    )
                )
                return not busy.first()

        await eventually(idle, within=SETTLE_TIMEOUT)


@pytest.fixture
async def world(make_world: MakeWorld) -> AsyncIterator[World]:
    async with make_world(
        World,
        seed=17,
        mailboxes=[MAX],
        run_worker=True,
        worker=WorkerSettings(poll_seconds=0.05, backoff_base_seconds=0.05),
    ) as built:
        yield built


def _delivery() -> dict[str, Any]:
    start = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
    payload = appointment(
        id=APPOINTMENT_ID,
        name="Metrics",
        start=start.isoformat(),
        end=(start + timedelta(hours=1)).isoformat(),
        timeZone="Europe/Berlin",
        bookingResourceList=[{"id": MAX_ID, "type": "EMPLOYEE", "name": "Max"}],
    )
    return {
        "type": "appointment.created",
        "timestamp": datetime.now(UTC).isoformat(),
        "data": {"organizationId": ORG, "appointment": payload},
    }


async def test_a_webhook_and_its_sync_move_the_series(world: World) -> None:
    client = world.http
    response = await client.put(
        f"/api/v1/connections/{ORG}",
        json={
            "tenant": world.tenant_id,
            "client_id": world.client_id,
            "client_secret": world.secret,
            "webhook_secret": WEBHOOK_SECRET,
            "locale": "en",
        },
        headers=HEADERS,
    )
    assert response.status_code in (200, 201), response.text
    response = await client.put(
        f"/api/v1/connections/{ORG}/employees/{MAX_ID}", json={"mailbox": MAX}, headers=HEADERS
    )
    assert response.status_code in (200, 201), response.text
    await world.settle()
    before = await scrape(client)

    accepted = await Sender(client).send(_delivery())
    assert accepted.status_code == 202, accepted.text
    body = encode(_delivery())
    forged = await client.post(
        f"/webhooks/bookingtime/{ORG}", content=body, headers=sign(body, secret="whsec_" + "A" * 32)
    )
    assert forged.status_code == 401
    await world.settle()
    after = await scrape(client)
    assert len(world.sandbox.control.events(MAX)) == 1

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    received = "calbridge_webhooks_received_total"
    assert delta(received, source="bookingtime", outcome="accepted") == 1
    assert delta(received, source="bookingtime", outcome="invalid_signature") == 1
    assert delta("calbridge_bookingtime_intake_seconds_count") == 2
    assert delta("calbridge_bookingtime_intake_seconds_sum") > 0
    job_runs = "calbridge_job_duration_seconds_count"
    assert delta(job_runs, kind="sync.appointment", outcome="done") == 1
    assert delta(job_runs, kind="sync.appointment", outcome="retry") == 0
    graph = "calbridge_graph_requests_total"
    assert delta(graph, operation="create_event", status="201") == 1
    assert delta("calbridge_graph_throttled_total", operation="create_event") == 0
    assert delta("calbridge_end_to_end_lag_seconds_count") == 1
    assert 0 < delta("calbridge_end_to_end_lag_seconds_sum") < SETTLE_TIMEOUT


async def test_graph_notification_outcomes_are_counted_per_item(
    client: httpx.AsyncClient,
) -> None:
    before = await scrape(client)
    handshake = await client.post("/webhooks/graph/lifecycle", params={"validationToken": "abc"})
    assert handshake.status_code == 200
    unknown = {"subscriptionId": "nope", "clientState": "x", "resource": "Users/a/Events/b"}
    response = await client.post(
        "/webhooks/graph/notifications", json={"value": [unknown, unknown, "junk"]}
    )
    assert response.status_code == 202
    refused = await client.post("/webhooks/graph/notifications", content=b"{not json")
    assert refused.status_code == 400
    after = await scrape(client)

    def delta(source: str, outcome: str) -> float:
        name = "calbridge_webhooks_received_total"
        return value(after, name, source=source, outcome=outcome) - value(
            before, name, source=source, outcome=outcome
        )

    assert delta("graph_lifecycle", "validation") == 1
    assert delta("graph_notifications", "unknown_subscription") == 2
    assert delta("graph_notifications", "malformed") == 1
    assert delta("graph_notifications", "invalid_json") == 1
    assert delta("graph_notifications", "accepted") == 0


# --- units -------------------------------------------------------------------------------------


async def test_job_outcomes_follow_the_worker() -> None:
    async def ok() -> None:
        return None

    async def fail(exc: Exception) -> None:
        raise exc

    kind = "test.metrics"
    before = parse(generate_latest(REGISTRY).decode())
    await counters.timed_job(ok(), kind=kind, last_attempt=False)
    for exc, last in (
        (PermanentError("no"), False),
        (RetryAfter(1), False),
        (ValueError("flaky"), True),
    ):
        with pytest.raises(type(exc)):
            await counters.timed_job(fail(exc), kind=kind, last_attempt=last)
    after = parse(generate_latest(REGISTRY).decode())
    runs = "calbridge_job_duration_seconds_count"
    for outcome in ("done", "failed", "retry", "dead"):
        assert (
            value(after, runs, kind=kind, outcome=outcome)
            - value(before, runs, kind=kind, outcome=outcome)
            == 1
        ), outcome


def test_a_worker_serves_its_series_on_the_metrics_port() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    counters.serve_worker_metrics("127.0.0.1", port)
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    families = {family.name for family in text_string_to_metric_families(response.text)}
    assert {"calbridge_job_duration_seconds", "calbridge_graph_requests"} <= families
