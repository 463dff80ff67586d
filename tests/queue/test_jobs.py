"""`app/tasks.py`: the registry the app runs, and the periodic prune."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import select

from app.config import RetentionSettings, Settings
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.db import Database
from app.maintenance.tasks import PRUNE_KIND, prune_impl
from app.models import InboxEvent, SyncRecord
from app.queue.manager import JobManager
from app.queue.registry import JobRegistry
from app.queue.repository import enqueue
from app.queue.worker import Worker
from app.tasks import build_registry
from tests.conftest import SECRET_KEY, bare_connection
from tests.helpers import eventually
from tests.queue.conftest import Clock, jobs, running

SECRET_BOX = SecretBox([SECRET_KEY.encode()])


def app_registry(settings: Settings) -> JobRegistry:
    return build_registry(settings, graph=GraphClients(settings), secret_box=SECRET_BOX)


async def test_registry_has_the_periodic_prune(settings: Settings) -> None:
    registry = app_registry(settings)
    kind = registry.get(PRUNE_KIND)
    assert kind is not None
    assert kind.every_seconds == settings.retention.prune_interval_seconds


async def test_prune_removes_only_expired_done_jobs_and_inbox_rows(
    database: Database, settings: Settings, manager: JobManager
) -> None:
    settings = settings.model_copy(
        update={"retention": RetentionSettings(done_jobs_days=7, inbox_days=30)}
    )
    clock = Clock()
    async with database.session_scope() as session:
        for _ in range(3):
            await enqueue(session, "test.job")
        await enqueue(session, "sync.appointment")  # pending: never pruned
    old_done = await manager.claim(worker_id="w", kinds=["test.job"], now=clock())
    old_dead = await manager.claim(worker_id="w", kinds=["test.job"], now=clock())
    assert old_done and old_dead
    await manager.complete(old_done, now=clock() - timedelta(days=8))
    await manager.mark_dead(old_dead, error="x", now=clock() - timedelta(days=8))
    recent = await manager.claim(worker_id="w", kinds=["test.job"], now=clock())
    assert recent is not None
    await manager.complete(recent, now=clock() - timedelta(days=6))
    async with database.session_scope() as session:
        for n, age in enumerate((31, 29, 1)):
            session.add(
                InboxEvent(
                    source="bookingtime",
                    external_id=f"msg_{n}",
                    event_type="appointment.created",
                    outcome="accepted",
                    received_at=clock() - timedelta(days=age),
                )
            )

    async with database.session_scope() as session:
        connection = bare_connection("org-prune")
        session.add(connection)
        await session.flush()
        for n, age in enumerate((200, 181, 179, 1)):
            session.add(
                SyncRecord(
                    connection_id=connection.id,
                    action="create",
                    status="success",
                    code="created",
                    message=f"record {n}",
                    created_at=clock() - timedelta(days=age),
                )
            )

    assert await prune_impl(database, settings, now=clock()) == (1, 1, 2)
    remaining = {(j.kind, j.state) for j in await jobs(database)}
    assert remaining == {
        ("test.job", "dead"),
        ("test.job", "done"),
        ("sync.appointment", "pending"),
    }
    async with database.session() as session:
        ids = (await session.scalars(select(InboxEvent.external_id))).all()
    assert sorted(ids) == ["msg_1", "msg_2"]
    async with database.session() as session:
        messages = (await session.scalars(select(SyncRecord.message))).all()
    assert sorted(messages) == ["record 2", "record 3"]
    assert await prune_impl(database, settings, now=clock()) == (0, 0, 0)


async def test_worker_schedules_and_runs_the_prune(
    database: Database, fast_settings: Settings
) -> None:
    settings = fast_settings.model_copy(
        update={"retention": RetentionSettings(prune_interval_seconds=3600)}
    )
    clock = Clock()
    worker = Worker(
        database,
        settings,
        app_registry(settings),
        clock=clock,
    )
    async with running(worker):
        await eventually(lambda: _states(database, ["pending"]))
        [tick] = await jobs(database, kind=PRUNE_KIND)
        assert (
            tick.kind == PRUNE_KIND
            and tick.dedupe_key == f"periodic:{PRUNE_KIND}:{int(tick.run_at.timestamp())}"
        )
        clock.set(tick.run_at)
        worker.wake()
        await eventually(lambda: _states(database, ["done", "pending"]))
    done, following = await jobs(database, kind=PRUNE_KIND)
    assert done.id == tick.id and done.state == "done"
    assert following.run_at == tick.run_at + timedelta(hours=1)


async def _states(database: Database, states: list[str]) -> bool:
    """The prune jobs' states, in id order, are these (the app has other periodic kinds)."""
    return [j.state for j in await jobs(database, kind=PRUNE_KIND)] == states
