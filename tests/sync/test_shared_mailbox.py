"""Several worker processes share one mailbox's 4 concurrent Graph requests: each keeps to 4 on
its own, and the queue's limit of running jobs per mailbox (which the intake's jobs are under
when their appointment is in one mailbox) keeps them to 4 together."""

from __future__ import annotations

import random

from sqlalchemy import func, select

from app.config import WorkerSettings
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.db import Database
from app.models import Job
from app.queue.worker import Worker
from app.tasks import build_registry
from tests.conftest import SECRET_KEY
from tests.helpers import eventually
from tests.queue.conftest import running
from tests.sync.crash_harness import make_script, running_world
from tests.world import MakeWorld

APPOINTMENTS = 40
LATENCY = 0.05  # seconds inside the mailbox's concurrency slot, as a Graph round trip


async def test_two_workers_never_send_one_mailbox_more_than_four_requests(
    db_url: str, make_world: MakeWorld
) -> None:
    async with running_world(make_world, mailboxes=1) as world:
        [employee] = world.employees
        world.sandbox.control.faults.add(
            "latency", seconds=LATENCY, mailbox=employee.mailbox, path="/events"
        )
        script = make_script(random.Random(7), world.employees, APPOINTMENTS)
        await world.send_all(script.phases[0])  # the creates, all in the one mailbox
        secret_box = SecretBox([SECRET_KEY.encode()])
        # Two processes' worth: each its own database engine, Graph clients and their limiter
        # (4 per mailbox each). The first runs at most 2 jobs and has them before the second
        # starts, so both take part; without the shared limit, up to 2 + 4 requests would go
        # out together.
        graphs = [GraphClients(world.settings) for _ in range(2)]
        databases = [Database(db_url) for _ in range(2)]
        workers = []
        for number, concurrency in enumerate((2, 16)):
            settings = world.settings.model_copy(
                update={"worker": WorkerSettings(concurrency=concurrency, poll_seconds=0.02)}
            )
            registry = build_registry(settings, graph=graphs[number], secret_box=secret_box)
            workers.append(
                Worker(databases[number], settings, registry, worker_id=f"worker-{number}")
            )
        try:
            async with running(workers[0]):
                await eventually(lambda: _claimed_by(world.database, "worker-0"))
                async with running(workers[1]):
                    await world.drain(within=60)
        finally:
            for graph in graphs:
                await graph.aclose()
            for database in databases:
                await database.dispose()
        assert len(world.sandbox.control.events(employee.mailbox)) == APPOINTMENTS
        assert world.sandbox.control.throttle.rejected == 0  # no 429: never over 4 at once
        # Both workers took part (else one limiter alone would explain the absence of 429s).
        async with world.database.session() as session:
            workers_used = await session.scalar(
                select(func.count(func.distinct(Job.worker_id))).where(
                    Job.kind == "sync.appointment"
                )
            )
        assert workers_used == 2


async def _claimed_by(database: Database, worker_id: str) -> bool:
    async with database.session() as session:
        claimed = await session.scalar(
            select(func.count()).where(Job.kind == "sync.appointment", Job.worker_id == worker_id)
        )
    return bool(claimed)
