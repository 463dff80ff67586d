"""An accepted delivery starts its job at once in a process that runs the worker, instead of at
the worker's next poll."""

from __future__ import annotations

import asyncio

import httpx

from app.config import Settings, WorkerSettings
from app.crypto import SecretBox
from app.db import Database
from app.main import create_app
from app.queue.registry import JobContext, JobRegistry
from tests.bookingtime.helpers import URL, encode, sample, sign


async def test_accepted_delivery_wakes_the_in_process_worker(
    settings: Settings, database: Database, secret_box: SecretBox, connection_id: int
) -> None:
    started = asyncio.Event()
    seen: list[dict[str, object]] = []

    async def sync_appointment(ctx: JobContext) -> None:
        seen.append(ctx.args)
        started.set()

    registry = JobRegistry()
    registry.register("sync.appointment", sync_appointment)
    # A poll far longer than the test may take: only the wake-up can start the job in time.
    slow_poll = settings.model_copy(update={"worker": WorkerSettings(poll_seconds=60)})
    app = create_app(
        slow_poll, database=database, secret_box=secret_box, run_worker=True, registry=registry
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://calbridge.test") as c:
            await asyncio.sleep(0.2)  # the worker's first claim finds nothing and starts polling
            body = encode(sample("appointment_created"))
            response = await c.post(URL, content=body, headers=sign(body))
            assert response.status_code == 202, response.text
            await asyncio.wait_for(started.wait(), timeout=5)
    assert seen == [{"connection_id": connection_id, "appointment_id": seen[0]["appointment_id"]}]
