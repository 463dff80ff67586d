"""Subscription upkeep gaps, against the Graph sandbox: deleting a connection deletes its
subscriptions at Graph, a failed create retries with the queue's backoff, and Entra refusing the
client secret in a subscription job or a background mailbox check marks the secret rejected."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import pytest
from sqlalchemy import select, update

from app.config import WorkerSettings
from app.connections.tasks import CHECK_MAILBOX_JOB, check_mailbox_job
from app.graph.errors import GraphError
from app.models import Connection, Employee, Job, Subscription
from app.models.base import utcnow
from app.notifications.subscriptions import HandshakeFailed, Subscriber
from app.notifications.tasks import SUBSCRIPTION_DELETE, SUBSCRIPTION_ENSURE, subscription_job
from app.queue.repository import enqueue_many
from app.queue.worker import Worker
from app.tasks import build_registry
from tests.helpers import eventually, job_context
from tests.notifications.subs_helpers import (
    ERIKA,
    ERIKA_MAILBOX,
    MAX,
    MAX_MAILBOX,
    ORG,
    World,
    subs_world,
)
from tests.world import MakeWorld

FAST = WorkerSettings(
    poll_seconds=0.02, backoff_base_seconds=0.05, backoff_max_seconds=0.2, max_attempts=4
)


@pytest.fixture
async def world(make_world: MakeWorld) -> AsyncIterator[World]:
    async with subs_world(make_world, worker=FAST) as built:
        yield built


@asynccontextmanager
async def worker_running(world: World) -> AsyncIterator[None]:
    """A worker with the app's registry on the sandbox (fast backoff), for the block."""
    registry = build_registry(world.settings, graph=world.graph, secret_box=world.secret_box)
    worker = Worker(world.database, world.settings, registry)
    task = asyncio.create_task(worker.run())
    try:
        yield
    finally:
        worker.stop()
        await task


async def jobs_of(world: World, kind: str) -> list[Job]:
    async with world.database.session() as session:
        return list(await session.scalars(select(Job).where(Job.kind == kind).order_by(Job.id)))


async def connection_row(world: World) -> Connection | None:
    async with world.database.session() as session:
        return await session.get(Connection, world.connection_id)


def settled(world: World, kind: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        jobs = await jobs_of(world, kind)
        return bool(jobs) and all(j.state in ("done", "failed", "dead") for j in jobs)

    return check


async def break_client_secret(world: World) -> None:
    """Store a client secret Entra does not know (AADSTS7000215 from the sandbox)."""
    async with world.database.session_scope() as session:
        await session.execute(
            update(Connection)
            .where(Connection.id == world.connection_id)
            .values(client_secret_encrypted=world.secret_box.encrypt("not-the-secret"))
        )


async def secret_state(world: World) -> str:
    response = await world.http.get(f"/api/v1/connections/{ORG}")
    assert response.status_code == 200, response.text
    state: str = response.json()["secret_state"]
    return state


# --- 1. deleting a connection deletes its subscriptions at Graph -----------------------------


async def test_deleting_the_connection_deletes_its_subscriptions_at_graph(world: World) -> None:
    await world.employ(ERIKA, ERIKA_MAILBOX)
    await world.ensure()
    await world.ensure(ERIKA_MAILBOX)
    users = {world.max_id, world.erika_id}
    assert {s.user_id for s in world.control.subscriptions()} == users
    rows = {
        r.mailbox: r.graph_subscription_id
        for r in [await world.subscription(m) for m in (MAX_MAILBOX, ERIKA_MAILBOX)]
        if r
    }
    await world.clear_jobs()

    deleted = await world.http.delete(f"/api/v1/connections/{ORG}")
    assert deleted.status_code == 204, deleted.text
    assert await connection_row(world) is None
    assert await world.subscription() is None and await world.subscription(ERIKA_MAILBOX) is None

    # Queued in the deleting transaction, each carrying what it needs once the row is gone:
    # the credentials, the secret only as the encrypted token.
    jobs = await world.jobs(SUBSCRIPTION_DELETE)
    assert {j.args["graph_subscription_id"]: j.args["mailbox"] for j in jobs} == {
        graph_id: mailbox for mailbox, graph_id in rows.items()
    }
    for job in jobs:
        credentials = job.args["credentials"]
        assert credentials["tenant"] == world.tenant_id
        assert world.secret_box.decrypt(credentials["client_secret_encrypted"])
        assert "client_secret" not in credentials

    async with worker_running(world):
        await eventually(settled(world, SUBSCRIPTION_DELETE))
    assert {j.state for j in await jobs_of(world, SUBSCRIPTION_DELETE)} == {"done"}
    assert world.control.subscriptions() == []


async def test_deleting_a_connection_without_subscriptions_queues_nothing(world: World) -> None:
    deleted = await world.http.delete(f"/api/v1/connections/{ORG}")
    assert deleted.status_code == 204
    assert await world.jobs(SUBSCRIPTION_DELETE) == []


async def test_removing_the_last_employee_deletes_the_subscription_at_graph(world: World) -> None:
    await world.ensure()
    assert len(world.control.subscriptions()) == 1
    await world.clear_jobs()
    deleted = await world.http.delete(f"/api/v1/connections/{ORG}/employees/{MAX}")
    assert deleted.status_code == 204
    async with worker_running(world):
        await eventually(settled(world, SUBSCRIPTION_DELETE))
    assert world.control.subscriptions() == []


# --- 2. a failed create retries with the queue's backoff ---------------------------------------


async def test_failed_create_retries_with_backoff_until_it_works(world: World) -> None:
    # Graph refuses the first two creates; the job's own retries set it up, no upkeep needed.
    world.control.faults.add("503", count=2, path=r"/v1\.0/subscriptions$")
    async with world.database.session_scope() as session:
        await enqueue_many(session, [subscription_job(world.connection_id, MAX_MAILBOX)])
    async with worker_running(world):
        await eventually(settled(world, SUBSCRIPTION_ENSURE))
    (job,) = await jobs_of(world, SUBSCRIPTION_ENSURE)
    assert (job.state, job.attempts) == ("done", 3)
    row = await world.subscription()
    assert row is not None and row.state == "active" and row.last_error_code is None
    assert [(r.status, r.code) for r in await world.records()] == [
        ("failed", "graph_unavailable"),
        ("failed", "graph_unavailable"),
        ("ok", "subscription_created"),
    ]
    assert len(world.control.subscriptions()) == 1


async def test_failed_create_is_dead_after_max_attempts_with_the_failure_shown(
    world: World,
) -> None:
    world.control.faults.add("503", path=r"/v1\.0/subscriptions$")
    async with world.database.session_scope() as session:
        await enqueue_many(session, [subscription_job(world.connection_id, MAX_MAILBOX)])
    async with worker_running(world):
        await eventually(settled(world, SUBSCRIPTION_ENSURE))
    (job,) = await jobs_of(world, SUBSCRIPTION_ENSURE)
    assert (job.state, job.attempts) == ("dead", FAST.max_attempts)
    row = await world.subscription()
    assert row is not None and row.state == "pending" and row.last_error_code is not None
    failed = [r for r in await world.records() if r.status == "failed"]
    assert len(failed) == FAST.max_attempts
    shown = (await world.http.get(f"/api/v1/connections/{ORG}/employees/{MAX}")).json()
    assert shown["subscription"]["message"].startswith(
        f"Change notifications for {MAX_MAILBOX} could not be set up"
    )


async def test_failed_validation_handshake_is_retried_not_permanent(world: World) -> None:
    # Graph's validation request finds nothing listening (calbridge's API starting, say): 400,
    # which Graph means as "not now", so the job retries rather than waiting for the upkeep.
    closed = world.settings.model_copy(update={"public_url": "http://127.0.0.1:9"})
    unreachable = Subscriber(world.database, closed, world.graph, world.secret_box)
    with pytest.raises(HandshakeFailed) as raised:
        await unreachable.ensure(
            connection_id=world.connection_id, mailbox=MAX_MAILBOX, now=utcnow()
        )
    assert not getattr(raised.value, "permanent", False)
    row = await world.subscription()
    assert row is not None and row.state == "pending" and row.last_error_message is not None
    assert [r.status for r in await world.records()] == ["failed"]

    await world.ensure()  # the retry, once the endpoint answers
    row = await world.subscription()
    assert row is not None and row.state == "active" and row.last_error_code is None


# --- 3. Entra refusing the client secret marks it rejected -----------------------------------


async def test_subscription_create_marks_a_rejected_secret(world: World) -> None:
    assert await secret_state(world) == "ok"
    await break_client_secret(world)
    with pytest.raises(GraphError, check=lambda error: error.permanent):
        await world.ensure()
    stored = await connection_row(world)
    assert stored is not None and stored.client_secret_rejected_code == "secret_invalid"
    assert await secret_state(world) == "rejected"


async def test_subscription_renew_and_delete_mark_a_rejected_secret(world: World) -> None:
    await world.ensure()
    row = await world.subscription()
    assert row is not None and row.graph_subscription_id is not None
    await break_client_secret(world)

    with pytest.raises(GraphError, check=lambda error: error.permanent):
        await world.renew()
    assert await secret_state(world) == "rejected"

    async with world.database.session_scope() as session:
        await session.execute(
            update(Connection).values(
                client_secret_rejected_at=None, client_secret_rejected_code=None
            )
        )
    assert await secret_state(world) == "ok"
    with pytest.raises(GraphError, check=lambda error: error.permanent):
        await world.service.delete(
            connection_id=world.connection_id,
            mailbox=MAX_MAILBOX,
            graph_subscription_id=row.graph_subscription_id,
            job_id=None,
        )
    assert await secret_state(world) == "rejected"


async def test_subscription_job_through_the_worker_marks_a_rejected_secret(world: World) -> None:
    await break_client_secret(world)
    async with world.database.session_scope() as session:
        await enqueue_many(session, [subscription_job(world.connection_id, MAX_MAILBOX)])
    async with worker_running(world):
        await eventually(settled(world, SUBSCRIPTION_ENSURE))
    (job,) = await jobs_of(world, SUBSCRIPTION_ENSURE)
    assert job.state == "failed"  # a refused secret needs the admin: no retries
    assert await secret_state(world) == "rejected"


async def test_background_mailbox_check_marks_a_rejected_secret(world: World) -> None:
    await break_client_secret(world)
    async with world.database.session() as session:
        employee = await session.scalar(select(Employee).where(Employee.booking_resource_id == MAX))
    assert employee is not None
    await check_mailbox_job(
        job_context(world, CHECK_MAILBOX_JOB, {"employee_id": employee.id, "mailbox": MAX_MAILBOX}),
        graph=world.graph,
        secret_box=world.secret_box,
    )
    assert await secret_state(world) == "rejected"
    async with world.database.session() as session:
        checked = await session.get(Employee, employee.id)
    assert checked is not None and checked.last_error_code == "secret_invalid"


async def test_employee_put_mailbox_check_marks_a_rejected_secret(world: World) -> None:
    await break_client_secret(world)
    put = await world.http.put(
        f"/api/v1/connections/{ORG}/employees/{ERIKA}", json={"mailbox": ERIKA_MAILBOX}
    )
    assert put.status_code == 201, put.text
    assert put.json()["mailbox_check"]["code"] == "secret_invalid"
    assert await secret_state(world) == "rejected"


async def test_no_subscription_row_is_left_for_a_deleted_connection(world: World) -> None:
    await world.ensure()
    await world.http.delete(f"/api/v1/connections/{ORG}")
    async with world.database.session() as session:
        assert list(await session.scalars(select(Subscription))) == []
