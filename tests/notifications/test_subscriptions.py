"""Subscriptions against the Graph sandbox over HTTPS, calbridge's endpoints answering the
handshake for real: create, renew before expiry, recreate after a 404, the 10-minute rule,
failures in the history, disabled without a public URL, create on mapping, delete on removal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import timedelta

import pytest
from pydantic import ValidationError

from app.busy.tasks import SYNC_MAILBOX
from app.config import Settings, describe_validation_error
from app.graph.errors import GraphError, Transient
from app.notifications.tasks import SUBSCRIPTION_DELETE, SUBSCRIPTION_ENSURE, SUBSCRIPTION_RENEW
from app.queue.errors import RetryAfter
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


@pytest.fixture
async def offline(make_world: MakeWorld) -> AsyncIterator[World]:
    """No CALBRIDGE_PUBLIC_URL."""
    async with subs_world(make_world, public_url=None) as built:
        yield built


async def test_ensure_creates_the_subscription_graph_calls_back(world: World) -> None:
    now = world.control.clock.freeze()
    await world.ensure(now=now)

    row = await world.subscription()
    assert row is not None and row.state == "active"
    (graph_sub,) = world.control.subscriptions()
    assert row.graph_subscription_id == graph_sub.id
    assert graph_sub.resource == f"users/{world.max_id}/events"
    assert graph_sub.change_types == ("created", "updated", "deleted")
    public = world.settings.public_url
    assert graph_sub.notification_url == f"{public}/webhooks/graph/notifications"
    assert graph_sub.lifecycle_notification_url == f"{public}/webhooks/graph/lifecycle"
    # Stored encrypted; random per subscription, >= 32 bytes of entropy, <= 128 characters.
    assert row.client_state_encrypted is not None
    state = world.secret_box.decrypt(row.client_state_encrypted)
    assert graph_sub.client_state == state and state not in row.client_state_encrypted
    assert 43 <= len(state) <= 128
    assert row.expires_at == now + timedelta(minutes=10_070) == graph_sub.expires_at
    assert row.graph_user_id == world.max_id
    # calbridge's own endpoints answered both handshakes.
    handshakes = [d for d in world.control.deliveries() if d.kind == "validation"]
    assert len(handshakes) == 2 and all(d.ok for d in handshakes)
    # The mailbox's first delta run is queued; the history says what happened.
    (job,) = await world.jobs(SYNC_MAILBOX)
    assert job.args == {"connection_id": world.connection_id, "mailbox": MAX_MAILBOX}
    (record,) = await world.records()
    assert (record.action, record.status, record.code) == (
        "subscription",
        "ok",
        "subscription_created",
    )
    assert record.booking_resource_id == MAX and MAX_MAILBOX in record.message

    await world.ensure(now=now + timedelta(minutes=5))  # live: nothing to do
    assert [s.id for s in world.control.subscriptions()] == [graph_sub.id]


async def test_client_states_differ_per_subscription(world: World) -> None:
    await world.employ(ERIKA, ERIKA_MAILBOX)
    await world.ensure()
    await world.ensure(ERIKA_MAILBOX)
    states = {s.client_state for s in world.control.subscriptions()}
    assert len(states) == 2


async def test_upkeep_renews_before_expiry_on_the_sandbox_clock(world: World) -> None:
    start = world.control.clock.freeze()
    await world.ensure(now=start)
    row = await world.subscription()
    assert row is not None and row.expires_at is not None
    outlook = world.settings.outlook

    # Not yet inside the renewal window: nothing queued.
    early = start + timedelta(
        minutes=outlook.subscription_minutes - outlook.renew_before_minutes - 5
    )
    world.control.clock.advance(early - start)
    assert await world.service.upkeep(now=early) == 0
    assert await world.jobs(SUBSCRIPTION_RENEW) == []

    later = early + timedelta(minutes=10)
    world.control.clock.advance(later - early)
    assert await world.service.upkeep(now=later) == 1
    (job,) = await world.jobs(SUBSCRIPTION_RENEW)
    assert job.args == {"connection_id": world.connection_id, "mailbox": MAX_MAILBOX}

    await world.renew(now=later)
    renewed = await world.subscription()
    assert renewed is not None and renewed.expires_at is not None
    assert renewed.expires_at == later + timedelta(minutes=10_070)
    assert renewed.last_renewed_at == later
    (graph_sub,) = world.control.subscriptions()
    assert graph_sub.id == row.graph_subscription_id and graph_sub.expires_at == renewed.expires_at
    assert [r.code for r in await world.records()][-1] == "subscription_renewed"
    # Thirty days of hourly upkeep: the subscription never lapses.
    await world.clear_jobs()
    now = later
    for _ in range(30 * 24):
        now += timedelta(hours=1)
        world.control.clock.advance(timedelta(hours=1))
        if await world.service.upkeep(now=now):
            await world.renew(now=now)
            await world.clear_jobs()
        assert [s.id for s in world.control.subscriptions()] == [graph_sub.id]


async def test_404_on_renew_recreates_then_full_resync(world: World) -> None:
    await world.ensure()
    row = await world.subscription()
    assert row is not None and row.graph_subscription_id is not None
    old_id = row.graph_subscription_id
    world.control.expire_subscription(old_id)
    await world.clear_jobs()

    await world.renew()
    gone = await world.subscription()
    assert gone is not None and gone.state == "pending" and gone.graph_subscription_id is None
    (job,) = await world.jobs()
    assert job.kind == SUBSCRIPTION_ENSURE and job.args["recreate"] is True
    assert [r.code for r in await world.records()][-1] == "subscription_gone"

    await world.ensure(recreate=True)
    again = await world.subscription()
    assert again is not None and again.state == "active"
    assert again.graph_subscription_id not in (None, old_id)
    assert [s.id for s in world.control.subscriptions()] == [again.graph_subscription_id]
    (sync,) = await world.jobs(SYNC_MAILBOX)
    assert sync.args["full"] is True


async def test_reauthorize_and_patch_stay_ten_minutes_apart(world: World) -> None:
    start = world.control.clock.freeze()
    await world.ensure(now=start)
    await world.renew(now=start, reauthorize=True)  # a new subscription may be reauthorized
    row = await world.subscription()
    assert row is not None and row.last_reauthorized_at == start

    with pytest.raises(RetryAfter) as too_soon:
        await world.renew(now=start + timedelta(minutes=4))
    assert too_soon.value.retry_after == start + timedelta(minutes=10)
    world.control.clock.advance(timedelta(minutes=10))  # Graph's clock moves on with calbridge's
    await world.renew(now=start + timedelta(minutes=10))
    with pytest.raises(RetryAfter) as again:
        await world.renew(now=start + timedelta(minutes=15), reauthorize=True)
    assert again.value.retry_after == start + timedelta(minutes=20)
    row = await world.subscription()
    assert row is not None and row.last_reauthorized_at == start
    assert row.last_renewed_at == start + timedelta(minutes=10)


async def test_permanent_failure_shows_in_status_and_history(world: World) -> None:
    typo = "d.wellt@contoso.example"
    await world.employ("brTypo00000000000000000000000000", typo)
    with pytest.raises(GraphError, check=lambda error: error.permanent):
        await world.ensure(typo)
    row = await world.subscription(typo)
    assert row is not None and row.state == "failed"
    assert row.last_error_code == "mailbox_invalid"
    assert row.last_error_message is not None and typo in row.last_error_message
    failed = [r for r in await world.records() if r.status == "failed"]
    assert [r.code for r in failed] == ["mailbox_invalid"]
    assert failed[0].message.startswith(f"Change notifications for {typo} could not be set up")
    # The upkeep tries failed ones again (an admin may have fixed the cause).
    assert await world.service.upkeep(now=world.control.clock.now()) == 1
    (job,) = await world.jobs(SUBSCRIPTION_ENSURE)
    assert job.args["mailbox"] == typo


async def test_transient_failure_retries_and_keeps_pending(world: World) -> None:
    world.control.faults.add("503", count=1, path=r"/v1\.0/subscriptions$")
    with pytest.raises(Transient):
        await world.ensure()
    row = await world.subscription()
    assert row is not None and row.state == "pending" and row.last_error_code is not None
    await world.ensure()
    row = await world.subscription()
    assert row is not None and row.state == "active" and row.last_error_code is None


async def test_without_public_url_subscriptions_are_disabled(offline: World) -> None:
    await offline.ensure()
    row = await offline.subscription()
    assert row is not None and row.state == "disabled"
    assert row.last_error_code == "subscription_disabled"
    assert row.last_error_message is not None and "CALBRIDGE_PUBLIC_URL" in row.last_error_message
    assert offline.control.subscriptions() == []
    response = await offline.http.get(f"/api/v1/connections/{ORG}/employees/{MAX}")
    assert response.status_code == 200, response.text
    status = response.json()["subscription"]
    assert status["state"] == "disabled"
    assert status["message"].startswith(f"Change notifications for {MAX_MAILBOX} are off")
    await offline.ensure()  # said once
    assert len([r for r in await offline.records() if r.code == "subscription_disabled"]) == 1


@pytest.mark.parametrize(
    "url",
    [
        "https://calbridge.example.com",
        "http://127.0.0.1:8000",
        "http://[::1]:8000",
        "http://localhost",
    ],
)
def test_public_url_https_or_loopback(url: str) -> None:
    assert Settings(public_url=url, _env_file=None).public_url == url  # type: ignore[call-arg]


@pytest.mark.parametrize(
    "url", ["http://calbridge.example.com", "ftp://calbridge.example.com", "https://", "calbridge"]
)
def test_public_url_refused_at_startup(url: str) -> None:
    with pytest.raises(ValidationError) as refused:
        Settings(public_url=url, _env_file=None)  # type: ignore[call-arg]
    # The one line calbridge prints at start names the setting and the value.
    line = describe_validation_error(refused.value)
    assert "CALBRIDGE_PUBLIC_URL" in line
    assert repr(url) in line


async def test_mapping_creates_and_removal_deletes(world: World) -> None:
    put = await world.http.put(
        f"/api/v1/connections/{ORG}/employees/{ERIKA}", json={"mailbox": ERIKA_MAILBOX}
    )
    assert put.status_code == 201, put.text
    (job,) = await world.jobs(SUBSCRIPTION_ENSURE)
    assert job.args == {"connection_id": world.connection_id, "mailbox": ERIKA_MAILBOX}
    await world.ensure(ERIKA_MAILBOX)
    erika_sub = await world.subscription(ERIKA_MAILBOX)
    assert erika_sub is not None and erika_sub.state == "active"
    shown = (await world.http.get(f"/api/v1/connections/{ORG}/employees/{ERIKA}")).json()
    assert shown["subscription"]["state"] == "active"
    assert shown["subscription"]["expires_at"] is not None

    # A second employee on the same mailbox keeps it alive when the first goes.
    await world.employ("brShared000000000000000000000000", ERIKA_MAILBOX)
    deleted = await world.http.delete(f"/api/v1/connections/{ORG}/employees/{ERIKA}")
    assert deleted.status_code == 204
    assert await world.subscription(ERIKA_MAILBOX) is not None
    assert await world.jobs(SUBSCRIPTION_DELETE) == []

    deleted = await world.http.delete(
        f"/api/v1/connections/{ORG}/employees/brShared000000000000000000000000"
    )
    assert deleted.status_code == 204
    assert await world.subscription(ERIKA_MAILBOX) is None
    (job,) = await world.jobs(SUBSCRIPTION_DELETE)
    assert job.args["graph_subscription_id"] == erika_sub.graph_subscription_id
    await world.service.delete(
        connection_id=world.connection_id,
        mailbox=ERIKA_MAILBOX,
        graph_subscription_id=str(job.args["graph_subscription_id"]),
        job_id=job.id,
    )
    assert all(s.user_id != world.erika_id for s in world.control.subscriptions())
    assert [r.code for r in await world.records()][-1] == "subscription_deleted"


async def test_moving_a_mapping_releases_the_old_mailbox(world: World) -> None:
    await world.ensure()
    row = await world.subscription()
    assert row is not None
    moved = await world.http.put(
        f"/api/v1/connections/{ORG}/employees/{MAX}", json={"mailbox": ERIKA_MAILBOX}
    )
    assert moved.status_code == 200, moved.text
    assert await world.subscription() is None
    (delete,) = await world.jobs(SUBSCRIPTION_DELETE)
    assert delete.args["graph_subscription_id"] == row.graph_subscription_id
    (ensure,) = await world.jobs(SUBSCRIPTION_ENSURE)
    assert ensure.args["mailbox"] == ERIKA_MAILBOX
