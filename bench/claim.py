"""Benchmark of the queue's claim when one mailbox is full and many jobs wait for it.

Mapping an employee with a long calendar queues a `sync.appointment` job per appointment, all
for that one mailbox, which runs at most 4 of them at once. Every job that ends wakes the worker
to claim again; each such claim must get past the jobs waiting for the full mailbox. This prints
what one claim that finds nothing to take costs, for each backlog size, on a fresh database.

    .venv/bin/python bench/claim.py                         # SQLite file in a temporary directory
    .venv/bin/python bench/claim.py --postgres-url postgresql://postgres@127.0.0.1:5432/test

With `--postgres-url`, each backlog runs in a new database on that server, dropped afterwards.
One JSON line: `claim_ms` (mean wall time of one claim, the engine's work included, by backlog),
`cpu_ms_per_claim` (this process's CPU time per claim, by backlog: on SQLite the engine's work
too, on PostgreSQL only calbridge's), the backlogs, the engine and the claims timed per backlog.
On SQLite the claim runs on the loop of the one process, so its cost is time no webhook is
answered.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

# Run as a script (`python bench/claim.py`): the repository root makes `app` and `bench`
# importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from app.db import Database
from app.migrate import upgrade
from app.models.base import utcnow
from app.queue.manager import JobManager
from app.queue.repository import NewJob, enqueue_many
from bench._stack import postgres_database

KIND = "sync.appointment"
MAILBOX = "staff0@contoso.example"
LIMIT = 4


async def _time_claims(url: str, backlog: int, claims: int) -> tuple[float, float]:
    """Wall and process CPU milliseconds per claim with `backlog` jobs queued behind a full
    mailbox."""
    upgrade(url)
    database = Database(url)
    try:
        manager = JobManager(database, lease_seconds=60, mailbox_concurrency=LIMIT, max_attempts=5)
        due = utcnow() - timedelta(seconds=1)
        jobs = [
            NewJob(
                KIND, {"n": n}, f"bench:{n}", serial_key=f"appt:{n}", mailbox=MAILBOX, run_at=due
            )
            for n in range(backlog + LIMIT)
        ]
        for start in range(0, len(jobs), 1000):
            async with database.session_scope() as session:
                await enqueue_many(session, jobs[start : start + 1000])
        held = await manager.claim_many(worker_id="holder", kinds=[KIND], now=utcnow(), limit=16)
        assert len(held) == LIMIT, f"the mailbox's limit: {len(held)} claimed"
        started, cpu_started = time.perf_counter(), time.process_time()
        for _ in range(claims):
            taken = await manager.claim_many(
                worker_id="claimer", kinds=[KIND], now=utcnow(), limit=16
            )
            assert taken == [], "a job of the full mailbox was claimed"
        wall = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        return wall / claims * 1000, cpu / claims * 1000
    finally:
        await database.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--postgres-url", help="run on a new schema of this PostgreSQL database")
    parser.add_argument("--backlogs", default="100,1000,5000", help="waiting jobs, comma-separated")
    parser.add_argument("--claims", type=int, default=50, help="claims timed per backlog")
    args = parser.parse_args()
    backlogs = [int(n) for n in args.backlogs.split(",")]
    figures: dict[str, tuple[float, float]] = {}
    for backlog in backlogs:
        if args.postgres_url:
            with postgres_database(args.postgres_url, prefix="calbridge_claim") as url:
                figures[str(backlog)] = asyncio.run(_time_claims(url, backlog, args.claims))
        else:
            with tempfile.TemporaryDirectory() as directory:
                url = f"sqlite:///{Path(directory) / 'claim.db'}"
                figures[str(backlog)] = asyncio.run(_time_claims(url, backlog, args.claims))
    line = {
        "database": "postgres" if args.postgres_url else "sqlite",
        "claim_ms": {backlog: round(ms, 2) for backlog, (ms, _) in figures.items()},
        "cpu_ms_per_claim": {backlog: round(cpu, 2) for backlog, (_, cpu) in figures.items()},
        "backlogs": backlogs,
        "claims": args.claims,
        "mailbox_limit": LIMIT,
    }
    print(json.dumps(line))


if __name__ == "__main__":
    main()
