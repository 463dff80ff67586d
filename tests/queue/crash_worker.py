"""A worker process for the crash test: its job hangs until the test kills the process.

Run as `python -m tests.queue.crash_worker DATABASE_URL`.
"""

from __future__ import annotations

import asyncio
import sys

from app.config import Settings, WorkerSettings
from app.db import Database
from app.queue.registry import JobContext, JobRegistry
from app.queue.worker import Worker


async def hang(ctx: JobContext) -> None:
    await asyncio.Event().wait()


async def main(url: str) -> None:
    settings = Settings(
        database_url=url,
        worker=WorkerSettings(poll_seconds=0.02),
        _env_file=None,
    )
    registry = JobRegistry()
    registry.register("test.job", hang)
    database = Database(url)
    await Worker(database, settings, registry, worker_id="doomed").run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
