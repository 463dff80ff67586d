"""Microsoft's own Python SDK (msgraph-sdk with azure-identity) against the sandbox, set up the way
an application sets it up: a ClientSecretCredential on the sandbox's authority, and an httpx client
that trusts the sandbox's CA, given to GraphServiceClient through its request adapter. Nothing here
tells the SDK what scope to ask for or how to spell a URL: it does what it does against Graph."""

from __future__ import annotations

import asyncio
import ssl
import warnings
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from tests.sandbox.conftest import TAG_ID, Setup
from tests.sandbox.receiver import Receiver, serve

# The SDK's generated modules (and kiota's) warn about their own deprecated classes as they are
# imported, some lazily, mid-test: those warnings are the SDK's business, not the sandbox's.
SDK_MODULES = ("msgraph", "kiota_abstractions")
pytestmark = [pytest.mark.filterwarnings(f"ignore::DeprecationWarning:{m}") for m in SDK_MODULES]

with warnings.catch_warnings():
    for module in SDK_MODULES:
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=module)
    from azure.identity.aio import ClientSecretCredential
    from kiota_abstractions.base_request_configuration import RequestConfiguration
    from kiota_authentication_azure.azure_identity_authentication_provider import (
        AzureIdentityAuthenticationProvider,
    )
    from kiota_http.middleware.options import RetryHandlerOption
    from msgraph import GraphRequestAdapter, GraphServiceClient
    from msgraph.generated.models.body_type import BodyType
    from msgraph.generated.models.date_time_time_zone import DateTimeTimeZone
    from msgraph.generated.models.event import Event
    from msgraph.generated.models.item_body import ItemBody
    from msgraph.generated.models.o_data_errors.o_data_error import ODataError
    from msgraph.generated.models.single_value_legacy_extended_property import (
        SingleValueLegacyExtendedProperty,
    )
    from msgraph.generated.models.subscription import Subscription
    from msgraph.generated.users.item.calendar_view.delta.delta_request_builder import (
        DeltaRequestBuilder,
    )
    from msgraph.generated.users.item.events.events_request_builder import EventsRequestBuilder
    from msgraph.generated.users.item.user_item_request_builder import UserItemRequestBuilder
    from msgraph_core import GraphClientFactory

WINDOW = ("2030-01-01T00:00:00Z", "2030-02-01T00:00:00Z")


@pytest.fixture
async def graph_sdk(setup: Setup) -> AsyncIterator[GraphServiceClient]:
    sandbox = setup.sandbox
    credential = ClientSecretCredential(
        setup.tenant_id,
        setup.client_id,
        setup.secret,
        authority=sandbox.authority_host,
        connection_verify=str(sandbox.ca_path),  # azure-core's aiohttp transport: a CA bundle
    )
    # The SDK's middleware replaces the client's transport without closing it: close it here.
    transport = httpx.AsyncHTTPTransport(
        verify=ssl.create_default_context(cafile=str(sandbox.ca_path))
    )
    http = GraphClientFactory.create_with_default_middleware(
        client=httpx.AsyncClient(transport=transport, base_url=sandbox.graph_url, timeout=10)
    )
    adapter = GraphRequestAdapter(AzureIdentityAuthenticationProvider(credential), client=http)
    try:
        yield GraphServiceClient(request_adapter=adapter)
    finally:
        await http.aclose()
        await transport.aclose()
        await credential.close()


@pytest.fixture
def receiver(tmp_path: Path) -> Iterator[Receiver]:
    yield from serve(Receiver(), None, tmp_path)


def _event(subject: str, day: int, booking: str) -> Event:
    return Event(
        subject=subject,
        body=ItemBody(content_type=BodyType.Text, content="Booked in bookingtime"),
        start=DateTimeTimeZone(date_time=f"2030-01-{day:02d}T09:00:00", time_zone="UTC"),
        end=DateTimeTimeZone(date_time=f"2030-01-{day:02d}T09:30:00", time_zone="UTC"),
        transaction_id=f"tx-{booking}",
        single_value_extended_properties=[
            SingleValueLegacyExtendedProperty(id=TAG_ID, value=booking)
        ],
    )


DeltaQuery = DeltaRequestBuilder.DeltaRequestBuilderGetQueryParameters
EventsQuery = EventsRequestBuilder.EventsRequestBuilderGetQueryParameters


def _paged(size: int) -> RequestConfiguration[DeltaQuery]:
    config: RequestConfiguration[DeltaQuery] = RequestConfiguration()
    config.headers.add("Prefer", f"odata.maxpagesize={size}")
    return config


async def _delta_round(
    user: UserItemRequestBuilder, link: str | None
) -> tuple[list[list[Event]], str]:
    """One delta round as the SDK's docs run it: follow @odata.nextLink to @odata.deltaLink."""
    config = _paged(2)
    if link is None:
        config.query_parameters = DeltaQuery(start_date_time=WINDOW[0], end_date_time=WINDOW[1])
        page = await user.calendar_view.delta.get(config)
    else:
        page = await user.calendar_view.delta.with_url(link).get(config)
    pages: list[list[Event]] = []
    while True:
        assert page is not None
        pages.append(list(page.value or []))
        if page.odata_next_link is None:
            assert page.odata_delta_link is not None
            return pages, page.odata_delta_link
        page = await user.calendar_view.delta.with_url(page.odata_next_link).get(_paged(2))


async def test_token_and_calendars(graph_sdk: GraphServiceClient, setup: Setup) -> None:
    # kiota asks for https://127.0.0.1/.default (no port); the sandbox must issue it.
    calendars = await graph_sdk.users.by_user_id(setup.max_id).calendars.get()
    assert calendars is not None and calendars.value is not None
    (calendar,) = calendars.value
    assert calendar.is_default_calendar is True and calendar.name == "Calendar"
    assert calendar.owner is not None and calendar.owner.address == "max@contoso.example"
    primary = await graph_sdk.users.by_user_id(setup.max_id).calendar.get()
    assert primary is not None and primary.id == calendar.id
    assert setup.control.token_requests == 1  # azure-identity caches the token


async def test_create_filter_patch_delete(graph_sdk: GraphServiceClient, setup: Setup) -> None:
    user = graph_sdk.users.by_user_id(setup.max_id)
    created = await user.events.post(_event("Haircut", 7, "Booking-1"))
    await user.events.post(_event("Colour", 8, "Booking-2"))
    assert created is not None and created.id is not None
    assert created.start is not None and created.start.date_time == "2030-01-07T09:00:00.0000000"
    assert created.transaction_id == "tx-Booking-1"

    query = EventsQuery(
        filter=f"singleValueExtendedProperties/Any(ep: ep/id eq '{TAG_ID}' and ep/value eq"
        " 'Booking-1')"
    )
    found = await user.events.get(RequestConfiguration(query_parameters=query))
    assert found is not None and [e.id for e in found.value or []] == [created.id]

    patched = await user.events.by_event_id(created.id).patch(Event(subject="Haircut (moved)"))
    assert patched is not None and patched.subject == "Haircut (moved)"
    assert patched.change_key != created.change_key
    (stored,) = [e for e in setup.control.events(setup.max_id) if e["restId"] == created.id]
    assert stored["subject"] == "Haircut (moved)"

    await user.events.by_event_id(created.id).delete()
    assert [e["subject"] for e in setup.control.events(setup.max_id)] == ["Colour"]
    with pytest.raises(ODataError) as gone:
        await user.events.by_event_id(created.id).get()
    assert gone.value.response_status_code == 404
    assert gone.value.error is not None and gone.value.error.code == "ErrorItemNotFound"


async def test_calendar_view_delta_pages(graph_sdk: GraphServiceClient, setup: Setup) -> None:
    # The SDK requests …/calendarView/delta() with parentheses.
    user = graph_sdk.users.by_user_id(setup.max_id)
    ids = []
    for day in range(1, 6):
        created = await user.events.post(_event(f"E{day}", day, f"Booking-{day}"))
        assert created is not None
        ids.append(created.id)
    pages, delta_link = await _delta_round(user, None)
    assert [len(page) for page in pages] == [2, 2, 1]
    assert [e.id for page in pages for e in page] == ids
    assert "$deltatoken=" in delta_link

    assert ids[1] is not None and ids[3] is not None
    await user.events.by_event_id(ids[1]).patch(Event(subject="E2 changed"))
    await user.events.by_event_id(ids[3]).delete()
    changes, _ = await _delta_round(user, delta_link)
    by_id = {e.id: e for page in changes for e in page}
    assert set(by_id) == {ids[1], ids[3]}
    assert by_id[ids[1]].subject == "E2 changed"
    assert by_id[ids[3]].additional_data["@removed"] == {"reason": "deleted"}


async def test_subscriptions(
    graph_sdk: GraphServiceClient, setup: Setup, receiver: Receiver
) -> None:
    now = setup.control.clock.freeze()

    def subscription(lifetime: timedelta) -> Subscription:
        return Subscription(
            change_type="created,updated,deleted",
            notification_url=f"{receiver.url}/hook",
            lifecycle_notification_url=f"{receiver.url}/lifecycle",
            resource=f"users/{setup.max_id}/events",
            expiration_date_time=now + lifetime,
            client_state="secret-state",
        )

    created = await graph_sdk.subscriptions.post(subscription(timedelta(days=3)))
    assert created is not None and created.expiration_date_time == now + timedelta(days=3)
    (stored,) = setup.control.subscriptions()
    assert stored.id == created.id and stored.client_state == "secret-state"

    # Graph's maximum for Outlook events is 10,080 minutes: 30 days is refused, not shortened.
    await graph_sdk.subscriptions.by_subscription_id(stored.id).delete()
    with pytest.raises(ODataError) as refused:
        await graph_sdk.subscriptions.post(subscription(timedelta(days=30)))
    assert refused.value.response_status_code == 400
    assert refused.value.error is not None and refused.value.error.code == "ExtensionError"
    assert refused.value.error.message == (
        "Subscription expiration can only be 10080 minutes in the future."
    )
    assert setup.control.subscriptions() == []


async def test_fifth_concurrent_request_is_throttled_with_retry_after(
    graph_sdk: GraphServiceClient, setup: Setup
) -> None:
    user = graph_sdk.users.by_user_id(setup.max_id)
    await user.calendar.get()  # a token first, so the four held calls do not each fetch one
    gate = setup.control.faults.hold(mailbox="max@contoso.example")
    held = [asyncio.create_task(user.events.get()) for _ in range(4)]
    try:
        assert await asyncio.to_thread(setup.control.throttle.wait_in_flight, setup.max_id, 4)
        # The SDK would retry by itself after Retry-After; with retries off the 429 shows.
        no_retry: RequestConfiguration[EventsQuery] = RequestConfiguration(
            options=[RetryHandlerOption(should_retry=False)]
        )
        with pytest.raises(ODataError) as throttled:
            await user.events.get(no_retry)
    finally:
        gate.release()
    assert throttled.value.response_status_code == 429
    assert throttled.value.error is not None
    assert throttled.value.error.code == "ApplicationThrottled"
    assert throttled.value.response_headers is not None
    assert throttled.value.response_headers["retry-after"] == "1"
    assert all(page is not None for page in await asyncio.gather(*held))
