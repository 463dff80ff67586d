"""Every call the connector needs, and every error class, against the bookingtime emulator over
real HTTPS: ISO weeks across New Year and a DST change, faults and hostile answers."""

from __future__ import annotations

from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from pydantic import SecretStr

from app.bookingtime_api import (
    AppCredentials,
    BookingtimeClient,
    CredentialsRefused,
    NotFound,
    OrganizationNotPermitted,
    Throttled,
    Transient,
    UnexpectedResponse,
    ValidationFailed,
    build_http_client,
    iso_week,
    week_bounds,
)
from app.config import Settings
from tests.bookingtime_api.conftest import BERLIN, MakeClient, Setup

TZ = ZoneInfo(BERLIN)


def berlin(*args: int) -> datetime:
    return datetime(*args, tzinfo=TZ)  # type: ignore[misc]


async def test_appointments_by_week_month_day_show_and_identify(
    client: BookingtimeClient, setup: Setup
) -> None:
    control = setup.control
    first = control.book(
        setup.org,
        start=berlin(2026, 6, 10, 9),
        end=berlin(2026, 6, 10, 10, 30),
        booking_resource_ids=[setup.max_id, setup.erika_id],
        name="Beratung",
        notes="Bitte klingeln",
        custom_id="cb-1",
    )
    second = control.book(
        setup.org,
        start=berlin(2026, 6, 30, 16),
        end=berlin(2026, 6, 30, 17),
        booking_resource_ids=[setup.erika_id],
    )
    control.cancel(setup.org, second)

    week = await client.list_week(setup.org, 2026, 24)
    assert [a.id for a in week.appointments] == [first] and week.invalid == []
    shown = week.appointments[0]
    assert shown.start == berlin(2026, 6, 10, 9) and shown.start.utcoffset() == timedelta(hours=2)
    assert shown.booking_resource_ids == [setup.max_id, setup.erika_id]
    assert (shown.name, shown.notes, shown.custom_id) == ("Beratung", "Bitte klingeln", "cb-1")
    assert shown.raw == control.appointment(setup.org, first)
    assert week.time_zone == BERLIN and week.range_start == berlin(2026, 6, 8)

    month = await client.list_month(setup.org, 2026, 6)
    assert [(a.id, a.canceled) for a in month.appointments] == [(first, False), (second, True)]
    day = await client.list_day(setup.org, date(2026, 6, 30))
    assert [a.id for a in day.appointments] == [second]

    assert (await client.show_appointment(setup.org, first)) == shown
    identified = await client.identify_appointment(setup.org, "cb-1")
    assert identified is not None and identified.id == first
    assert await client.identify_appointment(setup.org, "cb-unknown/../x") is None
    control.hard_delete(setup.org, first)
    assert await client.show_appointment(setup.org, first) is None


async def test_iso_weeks_across_new_year_in_the_organisations_zone(
    client: BookingtimeClient, setup: Setup
) -> None:
    control = setup.control
    new_year = control.book(
        setup.org,
        start=berlin(2027, 1, 1, 10),
        end=berlin(2027, 1, 1, 11),
        booking_resource_ids=[setup.max_id],
    )
    monday = control.book(
        setup.org,
        start=berlin(2027, 1, 4, 0, 15),
        end=berlin(2027, 1, 4, 0, 45),
        booking_resource_ids=[setup.max_id],
    )
    # Sunday 23:30 UTC is already Monday in Berlin: "this week" is 2027-W01 there.
    now = datetime.fromisoformat("2027-01-03T23:30:00+00:00")
    assert iso_week(now, BERLIN) == (2027, 1)
    this_week = await client.list_week(setup.org, *iso_week(now, BERLIN))
    last_week = await client.list_week(setup.org, *iso_week(now, BERLIN, weeks_ahead=-1))
    assert [a.id for a in this_week.appointments] == [monday]
    assert [a.id for a in last_week.appointments] == [new_year]
    assert (last_week.range_start, this_week.range_start) == week_bounds(2026, 53, BERLIN)
    assert last_week.range_end == berlin(2027, 1, 3, 23, 59, 59)


async def test_a_dst_change_inside_the_week(client: BookingtimeClient, setup: Setup) -> None:
    control = setup.control
    before = control.book(
        setup.org,
        start=berlin(2026, 3, 23, 9),
        end=berlin(2026, 3, 23, 10),
        booking_resource_ids=[setup.max_id],
    )
    after = control.book(
        setup.org,
        start=berlin(2026, 3, 29, 10),
        end=berlin(2026, 3, 29, 11),
        booking_resource_ids=[setup.max_id],
    )
    # Monday 00:30 CEST, Sunday 22:30 UTC: the next week, though 168 h after the week began
    # would still fall inside it.
    next_week = control.book(
        setup.org,
        start=berlin(2026, 3, 30, 0, 30),
        end=berlin(2026, 3, 30, 1),
        booking_resource_ids=[setup.max_id],
    )
    window = await client.list_week(setup.org, 2026, 13)
    assert [a.id for a in window.appointments] == [before, after]
    offsets = [a.start.utcoffset() for a in window.appointments]
    assert offsets == [timedelta(hours=1), timedelta(hours=2)]
    assert window.range_end - window.range_start == timedelta(hours=167, seconds=-1)
    following = await client.list_week(
        setup.org, *iso_week(window.range_end + timedelta(seconds=1), BERLIN)
    )
    assert [a.id for a in following.appointments] == [next_week]


async def test_resources_employees_and_synchronizations(
    client: BookingtimeClient, setup: Setup
) -> None:
    control = setup.control
    control.add_employee(
        setup.org,
        first_name="Max",
        last_name="Mustermann",
        email="max@contoso.example",
        custom_id="max",
    )
    control.add_synchronization(setup.org, setup.erika_id, "erika@contoso.example")
    resources = await client.list_booking_resources(setup.org)
    assert {(r.id, r.custom_id) for r in resources.items} == {
        (setup.max_id, "max"),
        (setup.erika_id, "erika"),
    }
    employees = await client.list_employees(setup.org)
    assert [(e.email, e.custom_id) for e in employees.items] == [("max@contoso.example", "max")]
    syncs = await client.list_synchronizations(setup.org)
    assert [(s.booking_resource_id, s.email, s.type) for s in syncs.items] == [
        (setup.erika_id, "erika@contoso.example", "GRAPH")
    ]
    other = await client.list_booking_resources(setup.other_org)
    assert [r.id for r in other.items] == [setup.other_max_id]


async def test_availability_exceptions_round_trip(client: BookingtimeClient, setup: Setup) -> None:
    org = setup.org
    added = await client.add_exception(
        org,
        booking_resource_id=setup.max_id,
        start=berlin(2026, 6, 10, 12),
        end=berlin(2026, 6, 10, 13),
        type="FREE",
        name="Outlook: busy",
        custom_id="cb-abc",
    )
    assert added.custom_id == "cb-abc" and added.start == berlin(2026, 6, 10, 12)
    assert (await client.show_exception(org, added.id)) == added
    assert (await client.identify_exception(org, "cb-abc")) == added
    assert await client.identify_exception(org, "cb-none") is None

    edited = await client.edit_exception(org, added.id, end=berlin(2026, 6, 10, 14))
    assert (edited.start, edited.end, edited.name) == (
        berlin(2026, 6, 10, 12),
        berlin(2026, 6, 10, 14),
        "Outlook: busy",
    )
    assert [e.id for e in (await client.list_exceptions(org)).items] == [added.id]
    assert [e.id for e in (await client.list_resource_exceptions(org, setup.max_id)).items] == [
        added.id
    ]
    assert (await client.list_resource_exceptions(org, setup.erika_id)).items == []
    assert [e["id"] for e in setup.control.exceptions(org)] == [added.id]

    assert await client.delete_exception(org, added.id) is True
    assert await client.delete_exception(org, added.id) is False
    assert await client.show_exception(org, added.id) is None
    with pytest.raises(NotFound):
        await client.edit_exception(org, added.id, name="gone")


# --- errors ---------------------------------------------------------------------------------------


async def test_a_wrong_secret_is_credentials_refused(make_client: MakeClient, setup: Setup) -> None:
    client = make_client(secret="not-the-secret")
    with pytest.raises(CredentialsRefused) as raised:
        await client.list_employees(setup.org)
    assert raised.value.permanent and raised.value.code == "invalid_client"
    assert raised.value.status == 401


async def test_an_organisation_the_app_may_not_access(
    client: BookingtimeClient, setup: Setup
) -> None:
    stranger = setup.control.add_organization(time_zone=BERLIN)
    with pytest.raises(OrganizationNotPermitted) as raised:
        await client.list_employees(stranger)
    assert raised.value.organization_id == stranger and raised.value.permanent
    # Permission withdrawn while an access token is still cached: the API's 403.
    await client.list_employees(setup.org)
    setup.control.permit(setup.client_id, setup.org, allowed=False)
    with pytest.raises(OrganizationNotPermitted) as raised:
        await client.list_employees(setup.org)
    assert raised.value.status == 403 and raised.value.texts


async def test_a_validation_failure_names_the_parameter(
    client: BookingtimeClient, setup: Setup
) -> None:
    with pytest.raises(ValidationFailed) as raised:
        await client.add_exception(
            setup.org,
            booking_resource_id=setup.max_id,
            start=berlin(2026, 6, 10, 12),
            end=berlin(2026, 6, 10, 13),
            type="BLOCKED",
            name="Outlook: busy",
        )
    assert raised.value.parameter == "type" and raised.value.status == 400
    assert "FREE" in str(raised.value)  # the allowed values, as bookingtime listed them


async def test_an_unknown_organisation_is_no_missing_appointment(
    client: BookingtimeClient, setup: Setup
) -> None:
    # bookingtime grants no token for an organisation it does not know (or the app may not
    # access): show raises rather than answering "no such appointment".
    with pytest.raises(OrganizationNotPermitted):
        await client.show_appointment("f6" + "0" * 30, "ed" + "0" * 30)


async def test_throttling_honours_retry_after(client: BookingtimeClient, setup: Setup) -> None:
    setup.sandbox.control.faults.add("429", path="/employee/list", count=1, retry_after="7")
    with pytest.raises(Throttled) as raised:
        await client.list_employees(setup.org)
    assert raised.value.retry_after == 7.0 and raised.value.retryable
    assert (await client.list_employees(setup.org)).invalid == []


async def test_throttling_with_an_http_date(client: BookingtimeClient, setup: Setup) -> None:
    when = setup.now() + timedelta(seconds=120)
    setup.sandbox.control.faults.add(
        "429",
        path="/employee/list",
        count=1,
        retry_after=when.strftime("%a, %d %b %Y %H:%M:%S GMT"),
    )
    with pytest.raises(Throttled) as raised:
        await client.list_employees(setup.org)
    assert raised.value.retry_after is not None and 115 <= raised.value.retry_after <= 120


@pytest.mark.parametrize("kind", ["503", "504", "500", "html500", "truncated", "drop"])
async def test_faults_are_transient(client: BookingtimeClient, setup: Setup, kind: str) -> None:
    setup.sandbox.control.faults.add(kind, path="/listWeek", count=1)  # type: ignore[arg-type]
    with pytest.raises(Transient) as raised:
        await client.list_week(setup.org, 2026, 24)
    assert raised.value.retryable and raised.value.organization_id == setup.org
    if kind in ("html500", "truncated"):
        assert raised.value.code == "not_json"
    assert (await client.list_week(setup.org, 2026, 24)).appointments == []


async def test_a_timeout_is_transient(settings: Settings, setup: Setup) -> None:
    quick = settings.bookingtime.model_copy(update={"timeout_seconds": 0.5})
    async with build_http_client(settings.model_copy(update={"bookingtime": quick})) as http:
        client = BookingtimeClient.from_settings(
            http, AppCredentials(setup.client_id, SecretStr(setup.secret)), quick, clock=setup.now
        )
        await client.list_employees(setup.org)
        setup.sandbox.control.faults.add("timeout", path="/employee/list", count=1, seconds=3)
        with pytest.raises(Transient) as raised:
            await client.list_employees(setup.org)
    assert raised.value.code == "timeout" and raised.value.sent


async def test_faults_at_the_token_endpoint(client: BookingtimeClient, setup: Setup) -> None:
    faults = setup.sandbox.control.faults
    faults.add("html500", path="/oauth/token", count=1)
    with pytest.raises(Transient):
        await client.list_employees(setup.org)
    faults.add("429", path="/oauth/token", count=1, retry_after="3")
    with pytest.raises(Throttled) as raised:
        await client.list_employees(setup.org)
    assert raised.value.retry_after == 3.0
    assert (await client.list_employees(setup.org)).items == []


async def test_another_status_is_reported_verbatim(client: BookingtimeClient, setup: Setup) -> None:
    # PUT on a GET route: bookingtime's 405 with its message.
    with pytest.raises(UnexpectedResponse) as raised:
        await client.sender.send("PUT", setup.org, "employee/list")
    assert raised.value.status == 405 and raised.value.permanent
    assert raised.value.texts and raised.value.texts[0] in str(raised.value)


async def test_an_unreadable_appointment_is_listed_apart(
    client: BookingtimeClient, setup: Setup
) -> None:
    control = setup.control
    good = control.book(
        setup.org,
        start=berlin(2026, 6, 10, 9),
        end=berlin(2026, 6, 10, 10),
        booking_resource_ids=[setup.max_id],
    )
    bad = control.book(
        setup.org,
        start=berlin(2026, 6, 11, 9),
        end=berlin(2026, 6, 11, 10),
        booking_resource_ids=[setup.max_id],
    )
    control.edit(setup.org, bad, name=["not", "text"])
    window = await client.list_week(setup.org, 2026, 24)
    assert [a.id for a in window.appointments] == [good]
    [invalid] = window.invalid
    assert (invalid.record_id, invalid.field) == (bad, "name")
    assert invalid.raw == control.appointment(setup.org, bad)
