"""BookingtimeClient: every App API call calbridge makes, each sent and classified by ApiSender
(app.bookingtime_api.sender), answers read into typed records (app.bookingtime_api.schemas).

All calls are under `organization/{f6…}/`; the organisation is the first argument of each.
Appointments come per ISO week, month or day (RANGE_LIST), booking resources, employees,
synchronizations and availability exceptions as whole lists (LIST, followed page by page when
bookingtime shortened one). It never retries, except the one new token after a 401.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any, TypeVar

import httpx

from app.bookingtime_api.auth import AppCredentials, Clock, TokenBroker, utc_now
from app.bookingtime_api.envelope import Envelope, range_list, record_list
from app.bookingtime_api.errors import NotFound
from app.bookingtime_api.schemas import (
    Appointment,
    AppointmentWindow,
    AvailabilityException,
    BookingResource,
    Employee,
    Listing,
    Synchronization,
    read_all,
    read_appointment,
    read_availability_exception,
    read_booking_resource,
    read_employee,
    read_synchronization,
)
from app.bookingtime_api.sender import MAX_PAGES, ApiSender, segment
from app.bookingtime_api.values import entity_id, parse_timestamp
from app.bookingtime_api.weeks import check_week
from app.config import BookingtimeSettings

T = TypeVar("T")
#: The parameter a 404 names when the organisation itself is unknown.
ORGANIZATION_PARAMETER = "organizationId"


def timestamp_text(moment: datetime) -> str:
    """A datetime as bookingtime takes it: ISO-8601 with its offset, to the second."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError("bookingtime needs timezone-aware datetimes")
    return moment.isoformat(timespec="seconds")


class BookingtimeClient:
    """One bookingtime app's view of the App API, on the process's shared httpx client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        credentials: AppCredentials,
        *,
        api_url: str,
        auth_url: str,
        locale: str,
        clock: Clock = utc_now,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self.broker = TokenBroker(http, credentials, auth_url=auth_url, clock=clock)
        self.sender = ApiSender(
            http, self.broker, api_url=api_url, locale=locale, max_pages=max_pages
        )

    @classmethod
    def from_settings(
        cls,
        http: httpx.AsyncClient,
        credentials: AppCredentials,
        settings: BookingtimeSettings,
        *,
        clock: Clock = utc_now,
    ) -> BookingtimeClient:
        return cls(
            http,
            credentials,
            api_url=settings.api_url,
            auth_url=settings.auth_url,
            locale=settings.locale,
            clock=clock,
        )

    async def _get(self, organization_id: str, path: str) -> Envelope:
        return await self.sender.send("GET", organization_id, path)

    async def _get_or_none(self, organization_id: str, path: str) -> Envelope | None:
        """The answer, or None when the record is not found; an unknown organisation is no
        missing record (bookingtime names `organizationId` then) and raises NotFound."""
        try:
            return await self._get(organization_id, path)
        except NotFound as exc:
            if exc.parameter == ORGANIZATION_PARAMETER:
                raise
            return None

    # --- appointments ----------------------------------------------------------------------

    async def _window(self, organization_id: str, path: str) -> AppointmentWindow:
        envelope = await self._get(organization_id, path)
        window = range_list(envelope, organization_id=organization_id)
        listing = read_all(
            window.items, lambda raw: read_appointment(raw, organization_id=organization_id)
        )
        return AppointmentWindow(
            range_start=parse_timestamp(window.range_start),
            range_end=parse_timestamp(window.range_end),
            time_zone=window.time_zone,
            appointments=listing.items,
            invalid=listing.invalid,
        )

    async def list_week(
        self, organization_id: str, iso_year: int, iso_week: int
    ) -> AppointmentWindow:
        """`appointment/year/{y}/week/{w}/listWeek`: the ISO week in the organisation's zone
        (app.bookingtime_api.weeks gives this week's and later weeks' numbers)."""
        check_week(iso_year, iso_week)
        path = f"appointment/year/{iso_year}/week/{iso_week}/listWeek"
        return await self._window(organization_id, path)

    async def list_month(self, organization_id: str, year: int, month: int) -> AppointmentWindow:
        """`appointment/year/{y}/month/{m}/listMonth`."""
        if not 1 <= month <= 12:
            raise ValueError(f"month must be 1 to 12, got {month}")
        return await self._window(
            organization_id, f"appointment/year/{year}/month/{month}/listMonth"
        )

    async def list_day(self, organization_id: str, day: date) -> AppointmentWindow:
        """`appointment/year/{y}/month/{m}/day/{d}/listDay`."""
        path = f"appointment/year/{day.year}/month/{day.month}/day/{day.day}/listDay"
        return await self._window(organization_id, path)

    async def show_appointment(
        self, organization_id: str, appointment_id: str
    ) -> Appointment | None:
        """`appointment/{id}/show`; None when bookingtime no longer has it (404)."""
        appointment_id = entity_id(appointment_id, prefix="ed", name="appointment_id")
        envelope = await self._get_or_none(organization_id, f"appointment/{appointment_id}/show")
        if envelope is None:
            return None
        return read_appointment(envelope.content, organization_id=organization_id)

    async def identify_appointment(
        self, organization_id: str, custom_id: str
    ) -> Appointment | None:
        """`appointment/{customId}/identify`; None when no appointment has that customId."""
        path = f"appointment/{segment(custom_id)}/identify"
        envelope = await self._get_or_none(organization_id, path)
        if envelope is None:
            return None
        return read_appointment(envelope.content, organization_id=organization_id)

    # --- booking resources, employees, synchronizations ------------------------------------

    async def _list(self, organization_id: str, base: str, read: Callable[[Any], T]) -> Listing[T]:
        """`{base}/list`; when bookingtime shortened it (recordTotal beyond the records), the
        whole collection from `{base}/index/{page}` instead."""
        envelope = await self._get(organization_id, f"{base}/list")
        records = record_list(envelope, organization_id=organization_id)
        if not records.truncated:
            return read_all(records.records, read)
        everything: list[Any] = []
        async for page in self.sender.pages(organization_id, f"{base}/index"):
            everything.extend(page.records)
        return read_all(everything, read)

    async def list_booking_resources(self, organization_id: str) -> Listing[BookingResource]:
        return await self._list(organization_id, "bookingResource", read_booking_resource)

    async def list_employees(self, organization_id: str) -> Listing[Employee]:
        return await self._list(organization_id, "employee", read_employee)

    async def list_synchronizations(self, organization_id: str) -> Listing[Synchronization]:
        """bookingtime's own calendar syncs: a booking resource ↔ mailbox map where present."""
        return await self._list(organization_id, "synchronization", read_synchronization)

    # --- availability exceptions (busy write-back) -----------------------------------------

    async def list_exceptions(self, organization_id: str) -> Listing[AvailabilityException]:
        return await self._list(
            organization_id, "availabilityException", read_availability_exception
        )

    async def list_resource_exceptions(
        self, organization_id: str, booking_resource_id: str
    ) -> Listing[AvailabilityException]:
        """`bookingResource/{br}/availabilityException/list`."""
        br = entity_id(booking_resource_id, prefix="br", name="booking_resource_id")
        return await self._list(
            organization_id,
            f"bookingResource/{br}/availabilityException",
            read_availability_exception,
        )

    async def show_exception(
        self, organization_id: str, exception_id: str
    ) -> AvailabilityException | None:
        exception_id = entity_id(exception_id, prefix="ac", name="exception_id")
        path = f"availabilityException/{exception_id}/show"
        envelope = await self._get_or_none(organization_id, path)
        return None if envelope is None else read_availability_exception(envelope.content)

    async def identify_exception(
        self, organization_id: str, custom_id: str
    ) -> AvailabilityException | None:
        """`availabilityException/{customId}/identify`; None when none has that customId."""
        path = f"availabilityException/{segment(custom_id)}/identify"
        envelope = await self._get_or_none(organization_id, path)
        return None if envelope is None else read_availability_exception(envelope.content)

    async def add_exception(
        self,
        organization_id: str,
        *,
        booking_resource_id: str,
        start: datetime,
        end: datetime,
        type: str,
        name: str,
        custom_id: str | None = None,
        appointment_template_id: str | None = None,
    ) -> AvailabilityException:
        """`POST availabilityException/add` (201). `type`'s blocking value is UNKNOWN upstream:
        the caller names it, nothing here guesses."""
        body: dict[str, Any] = {
            "name": name,
            "type": type,
            "bookingResourceId": entity_id(
                booking_resource_id, prefix="br", name="booking_resource_id"
            ),
            "start": timestamp_text(start),
            "end": timestamp_text(end),
        }
        if custom_id is not None:
            body["customId"] = custom_id
        if appointment_template_id is not None:
            body["appointmentTemplateId"] = appointment_template_id
        envelope = await self.sender.send(
            "POST", organization_id, "availabilityException/add", body=body
        )
        return read_availability_exception(envelope.content)

    async def edit_exception(
        self,
        organization_id: str,
        exception_id: str,
        *,
        start: datetime | None = None,
        end: datetime | None = None,
        name: str | None = None,
        type: str | None = None,
    ) -> AvailabilityException:
        """`PUT availabilityException/{ac}/edit` with only the fields given (a partial edit)."""
        exception_id = entity_id(exception_id, prefix="ac", name="exception_id")
        body: dict[str, Any] = {}
        if start is not None:
            body["start"] = timestamp_text(start)
        if end is not None:
            body["end"] = timestamp_text(end)
        if name is not None:
            body["name"] = name
        if type is not None:
            body["type"] = type
        envelope = await self.sender.send(
            "PUT", organization_id, f"availabilityException/{exception_id}/edit", body=body
        )
        return read_availability_exception(envelope.content)

    async def delete_exception(self, organization_id: str, exception_id: str) -> bool:
        """`DELETE availabilityException/{ac}/delete`; False when it was already gone (404)."""
        exception_id = entity_id(exception_id, prefix="ac", name="exception_id")
        try:
            await self.sender.send(
                "DELETE", organization_id, f"availabilityException/{exception_id}/delete"
            )
        except NotFound as exc:
            if exc.parameter == ORGANIZATION_PARAMETER:
                raise
            return False
        return True
