"""Thirty simulated days on the sandbox clock: the subscription never lapses, and every change a
person makes in Outlook (one each day: new meetings, moves, deletions) reaches the busy blocks
through a change notification and the delta run it queues. SQLite and PostgreSQL."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime, timedelta

from sqlalchemy import select

from app.busy.service import sync_mailbox_impl
from app.busy.tasks import SYNC_MAILBOX
from app.models import BusyBlock, Job
from app.notifications.tasks import SUBSCRIPTION_RENEW
from tests.helpers import eventually
from tests.notifications.subs_helpers import MAX_MAILBOX, World

DAYS = 30


async def _pending_deltas(world: World) -> list[Job]:
    return [j for j in await world.jobs(SYNC_MAILBOX) if j.args.get("mailbox") == MAX_MAILBOX]


async def _run_queued_delta(world: World) -> None:
    """Wait for the notification's `sync.mailbox` job, then run it as a worker would. No need
    to wait for its `run_at`: the test moves the intake's clock a minute on each simulated day,
    past the time until which the intake counts the run as pending."""
    jobs = await eventually(lambda: _pending_deltas(world))
    full = any(job.args.get("full") for job in jobs)
    await world.clear_jobs()
    await sync_mailbox_impl(
        database=world.database,
        settings=world.settings,
        secret_box=world.secret_box,
        graph=world.graph,
        connection_id=world.connection_id,
        mailbox=MAX_MAILBOX,
        full=full,
    )


async def _blocks(world: World) -> dict[str, tuple[datetime, datetime]]:
    async with world.database.session() as session:
        rows = await session.scalars(select(BusyBlock).where(BusyBlock.mailbox == MAX_MAILBOX))
        return {row.graph_event_id: (row.start_at, row.end_at) for row in rows}


def _body(start: datetime, subject: str) -> dict[str, object]:
    return {
        "subject": subject,
        "start": {"dateTime": f"{start:%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
        "end": {"dateTime": f"{start + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}", "timeZone": "UTC"},
        "showAs": "busy",
    }


async def test_thirty_days_without_a_lapse_or_a_missed_change(world: World) -> None:
    rng = random.Random(30)
    clock = world.control.clock
    clock.freeze()
    await world.ensure()
    await _run_queued_delta(world)  # the first delta after creating the subscription
    [subscription] = world.control.subscriptions()

    # Meetings live in calbridge's delta window, which follows the real clock.
    base = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) + timedelta(days=2)
    # A simulated day is a long quiet spell for the intake's pacing of delta runs too.
    intake = world.intake()
    quiet = [0.0]
    intake.clock = lambda: time.monotonic() + quiet[0]
    expected: dict[str, tuple[datetime, datetime]] = {}
    renewals = 0
    for day in range(DAYS):
        clock.advance(timedelta(days=1))
        quiet[0] += 60.0
        now = clock.now()
        if await world.service.upkeep(now=now):
            assert [j.kind for j in await world.jobs()] == [SUBSCRIPTION_RENEW]
            await world.clear_jobs()
            await world.renew(now=now)
            renewals += 1
        live = world.control.subscriptions()
        assert [s.id for s in live] == [subscription.id], f"day {day}: the subscription lapsed"
        assert live[0].expires_at > now

        # A person changes Max's calendar: mostly new meetings, sometimes a move or a deletion.
        choice = rng.random() if expected else 0.0
        if choice < 0.6:
            start = base + timedelta(days=rng.randrange(60), hours=rng.randrange(10))
            event_id = world.control.outlook_create(MAX_MAILBOX, _body(start, f"Day {day}"))
            expected[event_id] = (start, start + timedelta(hours=1))
        elif choice < 0.85:
            event_id = rng.choice(sorted(expected))
            start = base + timedelta(days=rng.randrange(60), hours=rng.randrange(10))
            world.control.outlook_edit(MAX_MAILBOX, event_id, _body(start, f"Moved on day {day}"))
            expected[event_id] = (start, start + timedelta(hours=1))
        else:
            event_id = rng.choice(sorted(expected))
            world.control.outlook_delete(MAX_MAILBOX, event_id)
            del expected[event_id]
        await _run_queued_delta(world)
        assert await _blocks(world) == expected, f"day {day}: a change was missed"

    # Renewed well before each expiry (10,080 minutes, renewed with 4,320 left): every 3-4 days.
    assert DAYS // 4 <= renewals <= DAYS // 3 + 1
    row = await world.subscription()
    assert row is not None and row.state == "active"
    assert row.last_notification_at is not None
