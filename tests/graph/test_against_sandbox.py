"""The Graph client against the sandbox over real HTTPS: the two were written from the protocol
file independently, so these tests check they agree on it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from pydantic import SecretStr

from app.config import Settings
from app.graph import errors
from app.graph.auth import AuthRegistry, GraphCredentials, build_msal_http_client
from app.graph.client import GraphClient
from app.graph.limits import MailboxLimiter
from app.graph.sender import build_http_client
from app.sandbox import SandboxServer, ThrottleLimits
from tests.sandbox.receiver import Receiver, serve

MAX = "max@contoso.example"
ERIKA = "erika@contoso.example"
EVENT = {
    "subject": "Beratung – Erika Musterfrau",
    "body": {"contentType": "text", "content": "Bitte Unterlagen mitbringen"},
    "start": {"dateTime": "2026-12-01T10:00:00", "timeZone": "W. Europe Standard Time"},
    "end": {"dateTime": "2026-12-01T11:00:00", "timeZone": "W. Europe Standard Time"},
    "showAs": "busy",
    "categories": ["bookingtime"],
}


@dataclass
class World:
    sandbox: SandboxServer
    registry: AuthRegistry
    http: httpx.AsyncClient
    tenant_id: str
    client_id: str
    secret: str
    max_id: str
    erika_id: str

    def client(
        self,
        *,
        secret: str | None = None,
        client_id: str | None = None,
        tenant: str | None = None,
        limiter: MailboxLimiter | None = None,
    ) -> GraphClient:
        credentials = GraphCredentials(
            tenant=tenant or self.tenant_id,
            client_id=client_id or self.client_id,
            client_secret=SecretStr(secret or self.secret),
        )
        return GraphClient(
            self.http,
            self.registry.auth(credentials),
            graph_url=self.sandbox.graph_url,
            limiter=limiter or MailboxLimiter(),
        )


@pytest.fixture
async def world() -> AsyncIterator[World]:
    limits = ThrottleLimits(concurrency=4, requests_per_window=10_000)
    async with SandboxServer.start(seed=3, limits=limits) as sandbox:
        control = sandbox.control
        tenant = control.add_tenant("contoso.example")
        app, secret = control.add_app(tenant.id)
        max_user = control.add_user(tenant.id, MAX)
        erika = control.add_user(tenant.id, ERIKA)
        settings = Settings(
            graph_url=sandbox.graph_url,
            authority_host=sandbox.authority_host,
            ca_bundle=sandbox.ca_path,
            _env_file=None,  # type: ignore[call-arg]
        )
        registry = AuthRegistry(
            authority_host=sandbox.authority_host,
            graph_url=sandbox.graph_url,
            http_client=build_msal_http_client(sandbox.ca_path),
        )
        http = build_http_client(settings)
        try:
            yield World(
                sandbox, registry, http, tenant.id, app.client_id, secret, max_user.id, erika.id
            )
        finally:
            await http.aclose()
            registry.close()


async def test_one_token_request_for_many_calls(world: World) -> None:
    client = world.client()
    await client.check_mailbox(MAX)
    await asyncio.gather(*(client.check_mailbox(mailbox) for mailbox in [MAX, ERIKA] * 5))
    created = await client.create_event(MAX, EVENT, transaction_id="tx-1", tag="org:ed1:br1")
    await client.get_event(MAX, created.value.id)
    assert world.sandbox.control.token_requests == 1


async def test_create_carries_transaction_id_and_tag_and_is_found_by_tag(world: World) -> None:
    client = world.client()
    tx = "7E163156-7762-4BEB-A1C6-729EA81755A7"
    created = await client.create_event(MAX, EVENT, transaction_id=tx, tag="org:ed1:br1")
    assert created.request_id, "Graph's request-id is kept for the sync history"
    [stored] = world.sandbox.control.events(world.max_id)
    assert stored["transactionId"] == tx
    assert stored["singleValueExtendedProperties"][0]["value"] == "org:ed1:br1"

    again = await client.create_event(MAX, EVENT, transaction_id=tx, tag="org:ed1:br1")
    assert again.value.id == created.value.id, "a retried create does not duplicate the event"
    assert len(world.sandbox.control.events(world.max_id)) == 1

    found = await client.find_events_by_tag(MAX, "org:ed1:br1")
    assert [event.id for event in found.value] == [created.value.id]
    assert (await client.find_events_by_tag(MAX, "org:ed2:br1")).value == []
    assert (await client.find_events_by_tag(ERIKA, "org:ed1:br1")).value == []


async def test_update_delete_and_their_errors(world: World) -> None:
    client = world.client()
    created = await client.create_event(MAX, EVENT, transaction_id="tx-2", tag="org:ed2:br1")
    first_key = created.value.change_key
    updated = await client.update_event(MAX, created.value.id, {"subject": "Moved"})
    assert updated.value.change_key != first_key

    with pytest.raises(errors.PreconditionFailed):
        await client.update_event(
            MAX, created.value.id, {"subject": "stale"}, if_match=str(first_key)
        )
    await client.delete_event(MAX, created.value.id)
    with pytest.raises(errors.ItemNotFound):
        await client.delete_event(MAX, created.value.id)
    with pytest.raises(errors.ItemNotFound):
        await client.update_event(MAX, created.value.id, {"subject": "gone"})


async def test_unknown_and_disabled_mailboxes(world: World) -> None:
    world.sandbox.control.add_user(world.tenant_id, "nobox@contoso.example", mailbox=False)
    client = world.client()
    with pytest.raises(errors.MailboxNotFound) as unknown:
        await client.check_mailbox("d.wellt@contoso.example")
    assert unknown.value.permanent
    with pytest.raises(errors.MailboxNotFound):
        await client.create_event(
            "nobox@contoso.example", EVENT, transaction_id="tx", tag="org:ed:br"
        )


async def test_consent_missing_and_access_policy_are_told_apart(world: World) -> None:
    control = world.sandbox.control
    control.block(world.client_id, ERIKA)
    client = world.client()
    await client.check_mailbox(MAX)
    with pytest.raises(errors.AccessDenied) as blocked:
        await client.check_mailbox(ERIKA)
    assert blocked.value.reason == "access_policy"

    tenant = control.add_tenant("fabrikam.example")
    app, secret = control.add_app(tenant.id, consent=False)
    control.add_user(tenant.id, "anna@fabrikam.example")
    no_consent = world.client(tenant=tenant.id, client_id=app.client_id, secret=secret)
    with pytest.raises(errors.AccessDenied) as denied:
        await no_consent.check_mailbox("anna@fabrikam.example")
    assert denied.value.reason == "consent_missing"


@pytest.mark.parametrize(
    ("case", "kind"),
    [
        ("wrong_secret", "invalid_secret"),
        ("expired_secret", "expired_secret"),
        ("unknown_app", "app_not_found"),
        ("unknown_tenant", "tenant_not_found"),
    ],
)
async def test_authentication_failures_by_aadsts_code(world: World, case: str, kind: str) -> None:
    control = world.sandbox.control
    if case == "wrong_secret":
        client = world.client(secret="not-the-secret")
    elif case == "expired_secret":
        control.clock.advance(timedelta(days=800))  # past every secret's expiry
        client = world.client()
    elif case == "unknown_app":
        client = world.client(client_id="0f0f0f0f-0000-4000-8000-000000000000")
    else:
        client = world.client(tenant="nowhere.example")
    with pytest.raises(errors.AuthenticationFailed) as failure:
        await client.check_mailbox(MAX)
    assert failure.value.kind == kind
    assert failure.value.permanent


async def test_expired_token_is_refreshed_once(world: World) -> None:
    client = world.client()
    await client.check_mailbox(MAX)
    world.sandbox.control.clock.advance(timedelta(hours=2))  # the token has expired
    await client.check_mailbox(MAX)
    assert world.sandbox.control.token_requests == 2


async def test_throttled_and_unavailable_carry_retry_after(world: World) -> None:
    control = world.sandbox.control
    client = world.client()
    control.faults.add("429", count=1, mailbox=world.max_id, retry_after="2.5")
    with pytest.raises(errors.Throttled) as throttled:
        await client.check_mailbox(MAX)
    assert throttled.value.retry_after == pytest.approx(2.5)
    assert not throttled.value.permanent
    until = client.mailbox_throttled_until(MAX)
    assert until is not None and until > datetime.now(UTC)

    control.faults.add("503", count=1, mailbox=world.erika_id, retry_after="7")
    with pytest.raises(errors.Transient) as unavailable:
        await client.check_mailbox(ERIKA)
    assert unavailable.value.retry_after == pytest.approx(7)


async def test_a_throttled_mailbox_waits_for_retry_after_before_the_next_call(
    world: World,
) -> None:
    now = [datetime.now(UTC)]
    waited: list[float] = []

    async def sleep(seconds: float) -> None:  # moves a fake clock instead of sleeping
        waited.append(seconds)
        now[0] += timedelta(seconds=seconds)

    client = world.client(limiter=MailboxLimiter(clock=lambda: now[0], sleep=sleep))
    world.sandbox.control.faults.add("429", count=1, mailbox=world.max_id, retry_after="3")
    with pytest.raises(errors.Throttled):
        await client.check_mailbox(MAX)
    await client.check_mailbox(ERIKA)  # another mailbox is not held back
    assert waited == []
    await client.check_mailbox(MAX)
    assert sum(waited) == pytest.approx(3, abs=0.01)


async def test_a_fifth_concurrent_request_to_one_mailbox_is_never_sent(world: World) -> None:
    control = world.sandbox.control
    client = world.client()
    await client.check_mailbox(MAX)  # token in hand: the five calls below are Graph calls only
    gate = control.faults.hold(mailbox=world.max_id)
    calls = [asyncio.create_task(client.check_mailbox(MAX)) for _ in range(5)]
    try:
        assert await asyncio.to_thread(control.throttle.wait_in_flight, world.max_id, 4)
        await asyncio.sleep(0)  # let the fifth call reach the limiter
        assert control.throttle.in_flight(world.max_id) == 4
        assert client.limiter.in_flight(client.mailbox_key(MAX)) == 4
    finally:
        gate.release()
    results = await asyncio.gather(*calls, return_exceptions=True)
    # Had the client sent the fifth, the sandbox would have answered 429 ApplicationThrottled.
    assert [type(r).__name__ for r in results] == ["GraphResult"] * 5
    assert control.throttle.rejected == 0


def _event(subject: str, day: int) -> dict[str, object]:
    return {
        **EVENT,
        "subject": subject,
        "start": {"dateTime": f"2026-12-{day:02d}T10:00:00", "timeZone": "UTC"},
        "end": {"dateTime": f"2026-12-{day:02d}T11:00:00", "timeZone": "UTC"},
    }


async def test_delta_rounds_paging_removals_and_410(world: World) -> None:
    client = world.client()
    window = {
        "start": datetime(2026, 11, 30, tzinfo=UTC),
        "end": datetime(2027, 1, 1, tzinfo=UTC),
    }
    ids = []
    for day in (1, 2, 3):
        created = await client.create_event(
            MAX, _event(f"day {day}", day), transaction_id=f"tx-d{day}", tag=f"org:ed{day}:br1"
        )
        ids.append(created.value.id)

    first = await client.delta_sync(MAX, page_size=2, **window)
    assert sorted(event.id for event in first.events) == sorted(ids)
    assert len(first.request_ids) == 2, "two pages of two and one"

    await client.update_event(MAX, ids[0], {"subject": "day 1, moved"})
    await client.delete_event(MAX, ids[1])
    second = await client.delta_sync(MAX, link=first.delta_link)
    assert [event.id for event in second.events] == [ids[0]]
    assert [removed.id for removed in second.removed] == [ids[1]]

    world.sandbox.runtime.delta.expire(world.max_id)
    with pytest.raises(errors.SyncStateNotFound):
        await client.delta_sync(MAX, link=second.delta_link)


async def test_subscription_handshake_notifications_and_upkeep(
    world: World, tmp_path: Path
) -> None:
    control = world.sandbox.control
    control.delivery_config.retry_delays = (0.01, 0.02, 0.04)
    for receiver in serve(Receiver(), None, tmp_path):
        client = world.client()
        created = await client.create_subscription(
            resource=f"users/{world.max_id}/events",
            change_type="created,updated,deleted",
            notification_url=f"{receiver.url}/hook",
            lifecycle_notification_url=f"{receiver.url}/life",
            client_state="a-random-client-state-of-our-own",
            expiration=datetime.now(UTC) + timedelta(minutes=10_070),
        )
        subscription = created.value
        # The expiry asked for (under Graph's maximum for events, 10,080 minutes); the handshake
        # done on both URLs.
        assert subscription.expiration_date_time <= datetime.now(UTC) + timedelta(minutes=10_071)
        assert {r.path for r in receiver.requests if "validationToken" in r.query} == {
            "/hook",
            "/life",
        }

        event = await client.create_event(MAX, EVENT, transaction_id="tx-s", tag="org:eds:br1")
        await asyncio.to_thread(
            receiver.wait, lambda r: {i["changeType"] for i in r.items()} >= {"created", "updated"}
        )
        items = receiver.items()
        assert {item["clientState"] for item in items} == {"a-random-client-state-of-our-own"}
        assert {item["resourceData"]["id"] for item in items} == {event.value.id}

        wanted = datetime.now(UTC) + timedelta(days=2)
        renewed = await client.renew_subscription(subscription.id, wanted)
        assert abs(renewed.value.expiration_date_time - wanted) < timedelta(minutes=1)
        await client.reauthorize_subscription(subscription.id)
        listed = await client.list_subscriptions()
        assert [s.id for s in listed.value] == [subscription.id]
        await client.delete_subscription(subscription.id)
        with pytest.raises(errors.ItemNotFound):
            await client.get_subscription(subscription.id)
