"""JobManager and the session-level queue queries, one transaction at a time."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import text

from app.config import Settings
from app.db import Database
from app.models import Mailbox
from app.queue.manager import JobManager
from app.queue.repository import (
    NewJob,
    enqueue,
    enqueue_many,
    next_tick,
    prune_done_jobs,
    schedule_tick,
    throttle_mailbox,
    tick_dedupe_key,
)
from tests.queue.conftest import Clock, job, jobs

KINDS = ["test.a", "test.b"]


async def try_add(database: Database, kind: str = "test.a", **kwargs: Any) -> int | None:
    async with database.session_scope() as session:
        return await enqueue(session, kind, **kwargs)


async def add(database: Database, kind: str = "test.a", **kwargs: Any) -> int:
    job_id = await try_add(database, kind, **kwargs)
    assert job_id is not None
    return job_id


async def claim_all(manager: JobManager, clock: Clock, worker_id: str = "w") -> list[int]:
    claimed = []
    while (got := await manager.claim(worker_id=worker_id, kinds=KINDS, now=clock())) is not None:
        claimed.append(got.id)
    return claimed


async def test_claim_leases_in_run_at_then_id_order(
    database: Database, manager: JobManager
) -> None:
    clock = Clock()
    later = await add(database, run_at=clock() - timedelta(seconds=1))
    first = await add(database, run_at=clock() - timedelta(seconds=5))
    future = await add(database, run_at=clock() + timedelta(seconds=5))

    claimed = await manager.claim(worker_id="w1", kinds=KINDS, now=clock())
    assert claimed is not None and claimed.id == first
    assert claimed.attempts == 1 and claimed.worker_id == "w1"
    assert claimed.lease_expires_at == clock() + timedelta(seconds=30)
    row = await job(database, first)
    assert (row.state, row.worker_id, row.started_at) == ("running", "w1", clock())

    assert await claim_all(manager, clock) == [later]
    clock.advance(5)
    assert await claim_all(manager, clock) == [future]


async def test_only_registered_kinds_are_claimed(database: Database, manager: JobManager) -> None:
    clock = Clock()
    unknown = await add(database, "sync.appointment")
    known = await add(database, "test.b")
    assert await claim_all(manager, clock) == [known]
    assert (await job(database, unknown)).state == "pending"


async def test_dedupe_one_pending_job_per_key(database: Database, manager: JobManager) -> None:
    clock = Clock()
    first = await try_add(database, dedupe_key="k", args={"n": 1})
    assert first is not None
    assert await try_add(database, dedupe_key="k", args={"n": 2}) is None
    assert [r.args for r in await jobs(database)] == [{"n": 1}]

    # A running job does not block a new pending one: state-based handlers need the rerun.
    assert await claim_all(manager, clock) == [first]
    second = await try_add(database, dedupe_key="k")
    assert second is not None and second != first
    assert await try_add(database, dedupe_key="k") is None


async def test_enqueue_many_in_one_statement_skips_pending_keys(
    database: Database, manager: JobManager
) -> None:
    clock = Clock()
    pending = await add(database, dedupe_key="b")
    batch = [
        NewJob("test.a", {"n": 1}, "a", serial_key="s", mailbox="m@x.test", max_attempts=2),
        NewJob("test.a", {"n": 2}, "b"),
        NewJob("test.a", {"n": 3}, "a"),  # the first of a key in the list wins
        NewJob("test.b", {}, "c", run_at=clock() + timedelta(seconds=5)),
    ]
    async with database.session_scope() as session:
        queued = await enqueue_many(session, batch, now=clock())
        assert await enqueue_many(session, []) == {}
    assert list(queued) == ["a", "b", "c"] and queued["b"] is None
    assert queued["a"] is not None and queued["c"] is not None
    a, c = await job(database, queued["a"]), await job(database, queued["c"])
    assert (a.args, a.serial_key, a.mailbox, a.max_attempts) == ({"n": 1}, "s", "m@x.test", 2)
    assert (a.state, a.attempts, a.run_at, a.created_at) == ("pending", 0, clock(), clock())
    assert (c.kind, c.run_at) == ("test.b", clock() + timedelta(seconds=5))
    assert [j.id for j in await jobs(database)] == [pending, queued["a"], queued["c"]]


async def test_a_new_job_pulls_its_pending_twins_run_at_forward(
    database: Database, manager: JobManager
) -> None:
    # The twin waits out an older attempt's backoff; the newer state must not wait with it.
    clock = Clock()
    later = clock() + timedelta(minutes=30)
    twin = await add(database, dedupe_key="k", run_at=later)
    assert await try_add(database, dedupe_key="k", run_at=clock()) is None
    pulled = await job(database, twin)
    assert (pulled.state, pulled.run_at) == ("pending", clock())
    assert await claim_all(manager, clock) == [twin]

    # Never pushed back: a later job leaves an earlier twin as it is.
    early = await add(database, dedupe_key="e", run_at=clock())
    async with database.session_scope() as session:
        queued = await enqueue_many(
            session,
            [NewJob("test.a", {}, "e", run_at=later), NewJob("test.a", {}, "f", run_at=later)],
            now=clock(),
        )
    assert queued["e"] is None and queued["f"] is not None
    assert (await job(database, early)).run_at == clock()
    assert (await job(database, queued["f"])).run_at == later
    assert len(await jobs(database, dedupe_key="e")) == 1


async def test_serial_key_one_running_and_enqueue_order(
    database: Database, manager: JobManager
) -> None:
    clock = Clock()
    a = await add(database, serial_key="s", run_at=clock() - timedelta(seconds=1))
    # Due earlier but enqueued later: still waits for `a` (enqueue order per key).
    b = await add(database, serial_key="s", run_at=clock() - timedelta(seconds=9))
    other = await add(database, serial_key="t", run_at=clock())
    assert await claim_all(manager, clock) == [a, other]
    assert (await job(database, b)).state == "pending"


async def test_serial_successor_runs_after_predecessor_ends(
    database: Database, manager: JobManager
) -> None:
    clock = Clock()
    a = await add(database, serial_key="s")
    b = await add(database, serial_key="s")
    claimed = await manager.claim(worker_id="w", kinds=KINDS, now=clock())
    assert claimed is not None and claimed.id == a
    assert await claim_all(manager, clock) == []
    # A retry puts `a` back as pending with a lower id: `b` still waits behind it.
    assert await manager.retry(
        claimed, run_at=clock() + timedelta(seconds=10), error="x", now=clock()
    )
    assert await claim_all(manager, clock) == []
    clock.advance(10)
    again = await manager.claim(worker_id="w", kinds=KINDS, now=clock())
    assert again is not None and again.id == a and again.attempts == 2
    assert await manager.complete(again, now=clock())
    assert await claim_all(manager, clock) == [b]


async def test_mailbox_limit(database: Database, manager: JobManager) -> None:
    clock = Clock()
    limit = manager.mailbox_concurrency
    mine = [await add(database, mailbox="a@x.test") for _ in range(limit + 2)]
    theirs = await add(database, mailbox="b@x.test")
    claimed = []
    while (got := await manager.claim(worker_id="w", kinds=KINDS, now=clock())) is not None:
        claimed.append(got)
    assert [c.id for c in claimed] == [*mine[:limit], theirs]
    # A slot of a@ frees up: exactly one more a@ job starts.
    assert await manager.complete(claimed[0], now=clock())
    assert await claim_all(manager, clock) == [mine[limit]]


async def test_a_claim_passes_over_the_keys_another_claimer_holds(
    database: Database, manager: JobManager
) -> None:
    """PostgreSQL's claimers run side by side: a serial key or mailbox another claimer is
    deciding on is passed over for the rest of the claim, and the jobs behind it are taken."""
    if database.is_sqlite:
        pytest.skip("SQLite's claims take turns (BEGIN IMMEDIATE): no key is ever held")
    clock = Clock()
    busy_mailbox = [await add(database, mailbox="a@x.test") for _ in range(2)]
    busy_serial = await add(database, serial_key="s")
    # Both keys: either lock held elsewhere passes the job over.
    held_serial_free_mailbox = await add(database, serial_key="s", mailbox="c@x.test")
    free_serial_held_mailbox = await add(database, serial_key="u", mailbox="a@x.test")
    free = [
        await add(database, mailbox="b@x.test"),
        await add(database, serial_key="t"),
        await add(database, serial_key="v", mailbox="c@x.test"),
    ]
    other = Database(database.url)
    try:
        async with other.engine.begin() as connection:  # the other claimer's transaction
            for key in ("calbridge.mailbox:a@x.test", "calbridge.serial:s"):
                await connection.execute(
                    text(
                        "SELECT pg_advisory_xact_lock("
                        "hashtextextended(concat(current_schema(), ':', CAST(:key AS text)), 0))"
                    ),
                    {"key": key},
                )
            claimed = await manager.claim_many(worker_id="w", kinds=KINDS, now=clock(), limit=10)
            assert [c.id for c in claimed] == free
    finally:
        await other.dispose()
    claimed = await manager.claim_many(worker_id="w", kinds=KINDS, now=clock(), limit=10)
    assert [c.id for c in claimed] == [*busy_mailbox, busy_serial, free_serial_held_mailbox]
    # The job queued behind `s` runs once the first is done (a serial key's jobs take turns).
    assert await manager.complete(claimed[2], now=clock())
    assert await claim_all(manager, clock) == [held_serial_free_mailbox]


async def test_one_batched_claim_keeps_every_limit(database: Database, manager: JobManager) -> None:
    """Each pick of a batch sees the picks before it: one running job per serial key, the
    mailbox limit, run_at order, and the batch's size."""
    clock = Clock()
    limit = manager.mailbox_concurrency
    mine = [await add(database, mailbox="a@x.test") for _ in range(limit + 2)]
    first, second = await add(database, serial_key="s"), await add(database, serial_key="s")
    free = [await add(database) for _ in range(3)]
    claimed = await manager.claim_many(worker_id="w", kinds=KINDS, now=clock(), limit=100)
    assert [c.id for c in claimed] == [*mine[:limit], first, *free]
    assert {(await job(database, c.id)).state for c in claimed} == {"running"}
    assert (await job(database, second)).state == "pending"
    assert await manager.claim_many(worker_id="w", kinds=KINDS, now=clock(), limit=100) == []
    # A batch takes no more than asked.
    for claim in claimed[:limit]:
        assert await manager.complete(claim, now=clock())
    assert await manager.complete(claimed[limit], now=clock())
    again = await manager.claim_many(worker_id="w", kinds=KINDS, now=clock(), limit=2)
    assert [c.id for c in again] == [*mine[limit:], second][:2]


async def test_throttle_blocks_until_then(database: Database, manager: JobManager) -> None:
    clock = Clock()
    until = clock() + timedelta(seconds=60)
    async with database.session_scope() as session:
        await throttle_mailbox(session, "a@x.test", until)
        # An earlier throttle is never shortened by a shorter one.
        await throttle_mailbox(session, "a@x.test", clock() + timedelta(seconds=5))
    queued = await add(database, mailbox="a@x.test")
    free = await add(database, mailbox="b@x.test")
    assert await claim_all(manager, clock) == [free]
    clock.set(until - timedelta(milliseconds=1))
    assert await claim_all(manager, clock) == []
    clock.set(until)
    assert await claim_all(manager, clock) == [queued]
    async with database.session() as session:
        box = await session.get(Mailbox, "a@x.test")
    assert box is not None and box.throttled_until == until


async def test_retry_with_throttle_sets_mailbox(database: Database, manager: JobManager) -> None:
    clock = Clock()
    await add(database, mailbox="a@x.test")
    sibling = await add(database, mailbox="a@x.test")
    claimed = await manager.claim(worker_id="w", kinds=KINDS, now=clock())
    assert claimed is not None
    until = clock() + timedelta(seconds=42)
    assert await manager.retry(
        claimed, run_at=until, error=RuntimeError("429"), now=clock(), throttle_until=until
    )
    row = await job(database, claimed.id)
    assert (row.state, row.run_at, row.last_error) == ("pending", until, "RuntimeError: 429")
    assert await claim_all(manager, clock) == []  # the sibling waits too
    clock.set(until - timedelta(milliseconds=1))
    assert await claim_all(manager, clock) == []
    clock.set(until)
    assert await claim_all(manager, clock) == [sibling, claimed.id]  # by run_at


async def test_heartbeat_extends_only_held_leases(database: Database, manager: JobManager) -> None:
    clock = Clock()
    await add(database)
    await add(database)
    mine = await manager.claim(worker_id="me", kinds=KINDS, now=clock())
    theirs = await manager.claim(worker_id="them", kinds=KINDS, now=clock())
    assert mine is not None and theirs is not None
    clock.advance(20)
    kept = await manager.heartbeat([mine, theirs], worker_id="me", now=clock())
    assert kept == {(mine.id, mine.attempts)}
    assert (await job(database, mine.id)).lease_expires_at == clock() + timedelta(seconds=30)
    assert (await job(database, theirs.id)).lease_expires_at == mine.lease_expires_at


async def test_lapsed_lease_is_recovered_and_stale_outcome_dropped(
    database: Database, manager: JobManager
) -> None:
    clock = Clock()
    job_id = await add(database)
    lost = await manager.claim(worker_id="dead-worker", kinds=KINDS, now=clock())
    assert lost is not None
    clock.advance(29)
    assert (await manager.recover_stalled(now=clock())).requeued == []
    clock.advance(2)
    stalled = await manager.recover_stalled(now=clock())
    assert (stalled.requeued, stalled.dead) == ([job_id], [])
    row = await job(database, job_id)
    assert row.state == "pending" and row.worker_id is None
    assert "lease expired: worker dead-worker" in (row.last_error or "")

    again = await manager.claim(worker_id="alive", kinds=KINDS, now=clock())
    assert again is not None and again.attempts == 2
    # The first worker comes back to life: its outcome no longer counts.
    assert not await manager.complete(lost, now=clock())
    assert not await manager.retry(lost, run_at=clock(), error="x", now=clock())
    assert not await manager.release(lost, now=clock())
    assert await manager.complete(again, now=clock())
    assert (await job(database, job_id)).state == "done"


async def test_lapsed_lease_on_last_attempt_is_dead(
    database: Database, manager: JobManager
) -> None:
    clock = Clock()
    job_id = await add(database, max_attempts=1)
    assert await manager.claim(worker_id="gone", kinds=KINDS, now=clock()) is not None
    clock.advance(31)
    stalled = await manager.recover_stalled(now=clock())
    assert (stalled.requeued, stalled.dead) == ([], [job_id])
    row = await job(database, job_id)
    assert row.state == "dead" and row.finished_at == clock()
    assert row.last_error == (
        "lease expired: worker gone stopped during attempt 1 of 1; no attempts left"
    )


@pytest.mark.parametrize("how", ["retry", "release", "stall"])
async def test_returning_job_is_superseded_by_pending_twin(
    database: Database, manager: JobManager, how: str
) -> None:
    clock = Clock()
    first = await add(database, dedupe_key="appointment:1")
    claimed = await manager.claim(worker_id="w", kinds=KINDS, now=clock())
    assert claimed is not None and claimed.id == first
    twin = await add(database, dedupe_key="appointment:1")
    assert twin is not None
    if how == "retry":
        back_at = clock() + timedelta(seconds=60)
        assert await manager.retry(claimed, run_at=back_at, error=OSError("reset"), now=clock())
    elif how == "release":
        back_at = clock()
        assert await manager.release(claimed, now=clock())
    else:
        clock.advance(31)
        back_at = clock()
        assert (await manager.recover_stalled(now=clock())).requeued == [first]
    old, new = await job(database, first), await job(database, twin)
    assert old.state == "done"
    assert (old.last_error or "").startswith(f"superseded by job {twin}")
    assert new.state == "pending" and new.run_at >= back_at
    if how == "retry":
        assert new.run_at == back_at  # the twin does not run before the retry would have
        assert await claim_all(manager, clock) == []
        clock.set(back_at)
    assert await claim_all(manager, clock) == [twin]


async def test_release_does_not_count_the_attempt(database: Database, manager: JobManager) -> None:
    clock = Clock()
    job_id = await add(database)
    claimed = await manager.claim(worker_id="w", kinds=KINDS, now=clock())
    assert claimed is not None and claimed.attempts == 1
    assert await manager.release(claimed, now=clock())
    row = await job(database, job_id)
    assert (row.state, row.attempts, row.worker_id) == ("pending", 0, None)


async def test_schedule_tick_once_per_tick_in_any_state(
    database: Database, manager: JobManager
) -> None:
    clock = Clock()
    tick = next_tick(clock(), 60)
    assert tick > clock() and tick.timestamp() % 60 == 0
    async with database.session_scope() as session:
        first = await schedule_tick(session, "test.a", 60, now=clock())
        assert await schedule_tick(session, "test.a", 60, now=clock()) is None
    assert first is not None
    row = await job(database, first)
    assert (row.run_at, row.dedupe_key) == (tick, tick_dedupe_key("test.a", tick))
    assert row.dedupe_key == f"periodic:test.a:{int(tick.timestamp())}"

    clock.set(tick)
    claimed = await manager.claim(worker_id="w", kinds=KINDS, now=clock())
    assert claimed is not None and claimed.id == first
    assert await manager.complete(claimed, now=clock(), every_seconds=60)
    following = await jobs(database, state="pending")
    assert [j.run_at for j in following] == [tick + timedelta(seconds=60)]
    # A process whose clock lags behind does not add the tick that already ran.
    async with database.session_scope() as session:
        assert await schedule_tick(session, "test.a", 60, now=tick - timedelta(seconds=1)) is None
    # At start-up, a live chain (pending or running job of the kind) gets no extra tick.
    clock.advance(3600)
    assert await manager.ensure_periodic("test.a", 60, now=clock()) is None


async def test_prune_done_jobs(database: Database, manager: JobManager) -> None:
    clock = Clock()
    for _ in range(3):
        await add(database)
    failed = await add(database, "test.b")
    for _ in range(4):
        claimed = await manager.claim(worker_id="w", kinds=KINDS, now=clock())
        assert claimed is not None
        if claimed.id == failed:
            assert await manager.fail(claimed, error="no", now=clock())
        else:
            assert await manager.complete(claimed, now=clock())
    async with database.session_scope() as session:
        assert await prune_done_jobs(session, finished_before=clock()) == 0
        cutoff = clock() + timedelta(seconds=1)
        assert await prune_done_jobs(session, finished_before=cutoff, limit=2) == 2
        assert await prune_done_jobs(session, finished_before=cutoff) == 1
    assert [j.id for j in await jobs(database)] == [failed]


async def test_concurrent_claims_respect_limits(
    databases: Callable[[], Database], database: Database, fast_settings: Settings
) -> None:
    """Claimers in separate processes (own engines on PostgreSQL) racing for one mailbox and
    one serial key never exceed the limits."""
    clock = Clock()
    for _ in range(12):
        await add(database, mailbox="hot@x.test")
    for _ in range(6):
        await add(database, serial_key="appointment:1")
    managers = [JobManager.from_settings(databases(), fast_settings) for _ in range(8)]
    for batch in (1, 1, 3, 5):  # single claims, then batches
        results = await asyncio.gather(
            *(
                m.claim_many(worker_id=f"w{i}", kinds=KINDS, now=clock(), limit=batch)
                for i, m in enumerate(managers)
            )
        )
        claimed = [r.id for claims in results for r in claims]
        assert len(set(claimed)) == len(claimed)
    # Claimers that lost a lock race came back empty-handed; top up without contention. Nothing
    # ends in this test, so the final count is the peak.
    await claim_all(managers[0], clock)
    running = await jobs(database, state="running")
    assert len([j for j in running if j.mailbox == "hot@x.test"]) == 4
    assert len([j for j in running if j.serial_key == "appointment:1"]) == 1
