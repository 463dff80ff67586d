"""The Graph notification and lifecycle endpoints on the real server: the handshake, every item
checked, invalid ones dropped while valid ones queue one delta run per mailbox, problems for
bad bodies, and each lifecycle event recovering through the jobs it queues."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest

from app.busy.tasks import SYNC_MAILBOX, mailbox_sync_job
from app.crypto import SecretBox
from app.notifications.intake import SYNC_MAX_INTERVAL, NotificationIntake
from app.notifications.router import MAX_VALIDATION_TOKEN
from app.notifications.tasks import SUBSCRIPTION_ENSURE, SUBSCRIPTION_RENEW
from tests.conftest import SECRET_KEY
from tests.helpers import assert_problem, eventually
from tests.notifications.subs_helpers import (
    ERIKA,
    ERIKA_MAILBOX,
    EVENT,
    MAX_MAILBOX,
    World,
    lifecycle,
    notification,
    subs_world,
)
from tests.world import MakeWorld

PATHS = ["/webhooks/graph/notifications", "/webhooks/graph/lifecycle"]


@pytest.fixture
async def world(make_world: MakeWorld) -> AsyncIterator[World]:
    async with subs_world(make_world, max_webhook_bytes=4096) as built:
        yield built


async def _subscribed(world: World) -> tuple[str, str]:
    """Max's subscription: its Graph id and plain clientState."""
    await world.ensure()
    await world.clear_jobs()
    row = await world.subscription()
    assert row is not None and row.graph_subscription_id and row.client_state_encrypted
    return row.graph_subscription_id, world.secret_box.decrypt(row.client_state_encrypted)


@pytest.mark.parametrize("path", PATHS)
async def test_handshake_echoes_the_decoded_token_as_plain_text(world: World, path: str) -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 1"
    response = await world.http.post(f"{path}?validationToken={quote(token)}")
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.text == token

    markup = "<script>alert('x')</script><b>hi</b>"
    response = await world.http.post(f"{path}?validationToken={quote(markup)}")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == markup.encode()

    too_long = "x" * (MAX_VALIDATION_TOKEN + 1)
    assert_problem(
        await world.http.post(f"{path}?validationToken={too_long}"), 400, "invalid_validation_token"
    )
    capped = "x" * MAX_VALIDATION_TOKEN
    assert (await world.http.post(f"{path}?validationToken={capped}")).text == capped


async def test_every_item_is_checked_and_only_valid_ones_queue(world: World) -> None:
    await world.employ(ERIKA, ERIKA_MAILBOX)
    sub_id, state = await _subscribed(world)
    own = f"Users/{world.max_id}/Events/AAMkAG="
    batch = {
        "value": [
            notification(sub_id, "wrong-" + state, own),
            notification("00000000-0000-0000-0000-000000000000", state, own),
            notification(sub_id, state, f"Users/{world.erika_id}/Events/AAMkAG="),
            notification(sub_id, state, f"Users/{ERIKA_MAILBOX}/Events/AAMkAG="),
            "not an object",
            notification(sub_id, state, own),
            notification(sub_id, state, f"users/{world.max_id}@{world.tenant_id}/events/X="),
        ]
    }
    response = await world.http.post(PATHS[0], json=batch)
    assert response.status_code == 202 and response.content == b""
    (job,) = await world.jobs()
    assert job.kind == SYNC_MAILBOX
    assert job.args == {"connection_id": world.connection_id, "mailbox": MAX_MAILBOX}
    assert dict(world.intake().dropped) == {
        "client_state": 1,
        "unknown_subscription": 1,
        "foreign_resource": 2,
        "malformed": 1,
    }
    row = await world.subscription()
    assert row is not None and row.last_notification_at is not None

    await world.clear_jobs()
    invalid_only = {"value": [notification(sub_id, "guess", own)]}
    assert (await world.http.post(PATHS[0], json=invalid_only)).status_code == 202
    assert await world.jobs() == []


async def test_a_burst_for_one_mailbox_is_one_pending_delta_run(world: World) -> None:
    sub_id, state = await _subscribed(world)
    own = f"Users/{world.max_id}/Events/AAMkAG="
    body = {"value": [notification(sub_id, state, own) for _ in range(5)]}
    answers = await asyncio.gather(*(world.http.post(PATHS[0], json=body) for _ in range(40)))
    assert {a.status_code for a in answers} == {202}
    (job,) = await world.jobs(SYNC_MAILBOX)
    assert job.mailbox == MAX_MAILBOX
    assert world.intake().accepted == 200


async def test_bad_bodies_are_problems(world: World) -> None:
    assert_problem(await world.http.post(PATHS[0], content=b"{not json"), 400, "invalid_json")
    assert_problem(await world.http.post(PATHS[1], json={"value": 3}), 400, "invalid_notification")
    assert_problem(await world.http.post(PATHS[0], json=[1, 2]), 400, "invalid_notification")
    big = json.dumps({"value": [{"pad": "x" * 5000}]}).encode()
    assert_problem(await world.http.post(PATHS[0], content=big), 413, "payload_too_large")

    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(10):
            yield b" " * 1000

    assert_problem(await world.http.post(PATHS[1], content=chunks()), 413, "payload_too_large")


async def test_a_change_in_outlook_reaches_the_queue(world: World) -> None:
    await _subscribed(world)
    world.control.outlook_create(MAX_MAILBOX, EVENT)

    (job,) = await eventually(lambda: world.jobs(SYNC_MAILBOX))
    assert job.args == {"connection_id": world.connection_id, "mailbox": MAX_MAILBOX}
    assert world.intake().dropped.total() == 0


async def test_missed_queues_a_full_resync(world: World) -> None:
    sub_id, _ = await _subscribed(world)
    world.control.fire_lifecycle(sub_id, "missed")

    async def full() -> list[object]:
        return [j for j in await world.jobs(SYNC_MAILBOX) if j.args.get("full") is True]

    await eventually(full)


async def test_reauthorization_required_recovers(world: World) -> None:
    sub_id, _ = await _subscribed(world)
    world.control.fire_lifecycle(sub_id, "reauthorizationRequired", suspend=True)
    (job,) = await eventually(lambda: world.jobs(SUBSCRIPTION_RENEW))
    assert job.args["reauthorize"] is True
    await world.renew(reauthorize=True)
    row = await world.subscription()
    assert row is not None and row.last_reauthorized_at is not None
    # Notifications flow again: a change in Outlook queues a delta run.
    world.control.outlook_create(MAX_MAILBOX, EVENT)
    await eventually(lambda: world.jobs(SYNC_MAILBOX))


async def test_subscription_removed_recreates_then_full_resync(world: World) -> None:
    sub_id, _ = await _subscribed(world)
    world.control.fire_lifecycle(sub_id, "subscriptionRemoved")
    (job,) = await eventually(lambda: world.jobs(SUBSCRIPTION_ENSURE))
    assert job.args["recreate"] is True
    await world.ensure(recreate=True)
    row = await world.subscription()
    assert row is not None and row.state == "active"
    assert row.graph_subscription_id not in (None, sub_id)
    assert [s.id for s in world.control.subscriptions()] == [row.graph_subscription_id]
    (sync,) = await world.jobs(SYNC_MAILBOX)
    assert sync.args.get("full") is True
    # The new subscription delivers: its notifications pass the checks.
    await world.clear_jobs()
    world.control.outlook_create(MAX_MAILBOX, EVENT)
    await eventually(lambda: world.jobs(SYNC_MAILBOX))


async def test_lifecycle_with_a_wrong_client_state_is_dropped(world: World) -> None:
    sub_id, state = await _subscribed(world)
    body = {
        "value": [
            lifecycle(sub_id, state[::-1], "subscriptionRemoved"),
            lifecycle("unknown", state, "missed"),
            lifecycle(sub_id, state, "somethingNew"),
        ]
    }
    assert (await world.http.post(PATHS[1], json=body)).status_code == 202
    assert await world.jobs() == []
    assert dict(world.intake().dropped) == {
        "client_state": 1,
        "unknown_subscription": 1,
        "unknown_lifecycle_event": 1,
    }


def test_a_storm_is_paced_into_a_few_runs() -> None:
    """Simulated clock: a 10-second storm (one notification per 10 ms) schedules a handful of
    runs; a single change after a quiet spell runs half a second later."""
    now = [0.0]
    intake = NotificationIntake(
        database=None,  # type: ignore[arg-type]
        secret_box=SecretBox([SECRET_KEY.encode()]),
        clock=lambda: now[0],
    )
    start = datetime(2026, 11, 26, 12, tzinfo=UTC)
    job = mailbox_sync_job(1, MAX_MAILBOX)
    runs: set[float] = set()
    for tick in range(1000):
        now[0] = tick / 100
        scheduled = intake.paced(job, start + timedelta(seconds=now[0]))
        assert scheduled.run_at is not None
        runs.add(round((scheduled.run_at - start).total_seconds(), 2))
    assert len(runs) <= 6, sorted(runs)
    assert min(runs) == 0.5
    # Never more than the cap between two runs, however long the storm.
    gaps = [b - a for a, b in zip(sorted(runs), sorted(runs)[1:], strict=False)]
    assert max(gaps) <= SYNC_MAX_INTERVAL

    now[0] = 100.0  # quiet for a minute: back to the short debounce
    at = start + timedelta(seconds=100)
    assert intake.paced(job, at).run_at == at + timedelta(seconds=0.5)
    full = mailbox_sync_job(1, MAX_MAILBOX, full=True)
    assert intake.paced(full, at).run_at is None  # full resyncs are not paced


def test_a_persons_quick_changes_are_not_paced_like_a_storm() -> None:
    """A person's changes, each right after the last one's run, all run half a second after
    their notification: only a storm stretches the interval."""
    now = [0.0]
    intake = NotificationIntake(
        database=None,  # type: ignore[arg-type]
        secret_box=SecretBox([SECRET_KEY.encode()]),
        clock=lambda: now[0],
    )
    start = datetime(2026, 11, 26, 12, tzinfo=UTC)
    job = mailbox_sync_job(1, MAX_MAILBOX)
    for change in range(20):
        now[0] = change * 0.7  # the previous run (at +0.5) has just happened
        at = start + timedelta(seconds=now[0])
        for _ in range(2):  # Graph may send two notifications for one change
            assert intake.paced(job, at).run_at == at + timedelta(seconds=0.5), change


async def test_subscribed_by_address_learns_the_owner_id_from_graph(
    make_world: MakeWorld,
) -> None:
    """Without User.Read.All the subscription names the mailbox by address, while Graph's
    notifications name it by object id: the first checked item tells it, later ones must match."""
    async with subs_world(make_world, app_roles={"Calendars.ReadWrite"}) as world:
        await world.ensure()
        row = await world.subscription()
        assert row is not None and row.graph_user_id is None
        (graph_sub,) = world.control.subscriptions()
        assert graph_sub.resource == f"users/{MAX_MAILBOX}/events"
        await world.clear_jobs()

        world.control.outlook_create(MAX_MAILBOX, EVENT)
        await eventually(lambda: world.jobs(SYNC_MAILBOX))
        learned = await world.subscription()
        assert learned is not None and learned.graph_user_id == world.max_id

        await world.clear_jobs()
        assert row.client_state_encrypted is not None
        state = world.secret_box.decrypt(row.client_state_encrypted)
        other = f"Users/{world.erika_id}/Events/AAMkAG="
        body = {"value": [notification(graph_sub.id, state, other)]}
        assert (await world.http.post(PATHS[0], json=body)).status_code == 202
        assert await world.jobs() == []
        assert world.intake().dropped["foreign_resource"] == 1
