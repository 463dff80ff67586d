"""The App API's JSON shapes (reference §2.4, §3.3, §4, §5): entities rendered in their
organisation's time zone, and the LIST, PAGINATION_LIST and RANGE_LIST collections."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from app.sandbox.bookingtime.store import (
    CUSTOMER,
    Appointment,
    AvailabilityException,
    BookingResource,
    Employee,
    Organization,
    Switches,
    Synchronization,
    stable_id,
)

RECORD_LIMIT = 9999
PAGE_SIZE = 25  # every PAGINATION_LIST mock in the SDK has recordPerPage 25


def timestamp(instant: datetime, time_zone: str) -> str:
    """ISO-8601 with the zone's offset at that instant, to the second."""
    return instant.astimezone(ZoneInfo(time_zone)).isoformat(timespec="seconds")


def booking_resource_short(resource: BookingResource) -> dict[str, Any]:
    return {
        "class": "BOOKING_RESOURCE_SHORT",
        "id": resource.id,
        "customId": resource.custom_id,
        "category": resource.category,
        "name": resource.name,
        "organizationId": resource.organization_id,
    }


def booking_resource(resource: BookingResource) -> dict[str, Any]:
    first, _, last = resource.name.partition(" ")
    is_person = resource.category == "EMPLOYEE"
    return {
        "class": "BOOKING_RESOURCE",
        "id": resource.id,
        "customId": resource.custom_id,
        "category": resource.category,
        "name": resource.name,
        "nameI18nList": [],
        "gender": "NOT_SPECIFIED",
        "title": "",
        "firstName": first if is_person else "",
        "lastName": last if is_person else "",
        "description": "",
        "descriptionI18nList": [],
        "image": None,
        "additionalData": [],
        "organizationId": resource.organization_id,
    }


def employee(person: Employee) -> dict[str, Any]:
    return {
        "class": "EMPLOYEE",
        "id": person.id,
        "customId": person.custom_id,
        "gender": "NOT_SPECIFIED",
        "title": "",
        "firstName": person.first_name,
        "lastName": person.last_name,
        "email": person.email,
        "notes": "",
        "organizationId": person.organization_id,
    }


def synchronization(sync: Synchronization) -> dict[str, Any]:
    return {
        "class": "SYNCHRONIZATION",
        "id": sync.id,
        "customId": None,
        "bookingResourceId": sync.booking_resource_id,
        "type": sync.type,
        "email": sync.email,
        "notes": "",
        "syncInterval": "MINUTES_15",
        "organizationId": sync.organization_id,
    }


def _customer(appointment: Appointment) -> dict[str, Any] | list[Any]:
    if appointment.customer is None:
        return []  # PHP's empty array, as in the reference's appointment mock
    given = appointment.customer
    customer_id = given.get("id") or stable_id(CUSTOMER, f"{appointment.id}:customer")
    return {"class": "CUSTOMER", **given, "id": customer_id}


def appointment(item: Appointment, org: Organization, switches: Switches) -> dict[str, Any]:
    zone = org.time_zone
    resources = [
        booking_resource_short(org.booking_resources[rid])
        for rid in item.booking_resource_ids
        if rid in org.booking_resources
    ]
    body: dict[str, Any] = {
        "class": "APPOINTMENT",
        "id": item.id,
        "customId": item.custom_id,
        "start": timestamp(item.start, zone),
        "end": timestamp(item.end, zone),
        "duration": int((item.end - item.start).total_seconds() // 60),
        "timeZone": zone,
        "protected": False,
        "name": item.name,
        "nameI18nList": [],
        "description": item.description,
        "descriptionI18nList": [],
        "notes": item.notes or "",
        "showPrice": False,
        "priceGross": 0,
        "taxRate": 19,
        "currency": "EUR",
        "customer": _customer(item),
        "address": item.address if item.address is not None else [],
        "canceled": item.canceled,
        "moved": item.moved,
        "bookingResourceList": resources,
        "fileList": [],
        "organizationId": item.organization_id,
    }
    if switches.timestamp_edit:
        body["timestampAdd"] = timestamp(item.created_at, zone)
        body["timestampEdit"] = timestamp(item.edited_at, zone)
    return body


def availability_exception(item: AvailabilityException, org: Organization) -> dict[str, Any]:
    return {
        "class": "AVAILABILITY_EXCEPTION",
        "id": item.id,
        "customId": item.custom_id,
        "name": item.name,
        "type": item.type,
        "start": timestamp(item.start, org.time_zone),
        "end": timestamp(item.end, org.time_zone),
        "bookingResourceId": item.booking_resource_id,
        "appointmentTemplateId": item.appointment_template_id,
        "organizationId": item.organization_id,
    }


def record_list(records: list[dict[str, Any]], limit: int = RECORD_LIMIT) -> dict[str, Any]:
    """At most `limit` records; `recordTotal` counts them all, so a shortened list shows."""
    return {
        "class": "LIST",
        "recordTotal": len(records),
        "recordLimit": limit,
        "recordList": records[: max(limit, 0)],
    }


def pagination_list(records: list[dict[str, Any]], page: int) -> dict[str, Any]:
    """Page `page` (1-based) of 25. An empty collection still has one page, as the SDK's mock
    shows (`pageTotal 1, recordFrom 1, recordTo 0`); a page beyond the last is empty alike."""
    total = len(records)
    first = (page - 1) * PAGE_SIZE
    shown = records[first : first + PAGE_SIZE]
    return {
        "class": "PAGINATION_LIST",
        "pageCurrent": page,
        "pageTotal": max(1, -(-total // PAGE_SIZE)),
        "recordFrom": first + 1,
        "recordTo": first + len(shown),
        "recordTotal": total,
        "recordPerPage": PAGE_SIZE,
        "recordList": shown,
    }


def range_list(
    start: datetime, end: datetime, time_zone: str, records: list[dict[str, Any]]
) -> dict[str, Any]:
    """`end` is exclusive; the rangeEnd shown is its last second, as the appointment mock has."""
    return {
        "class": "RANGE_LIST",
        "rangeStart": timestamp(start, time_zone),
        "rangeEnd": timestamp(end - timedelta(seconds=1), time_zone),
        "timeZone": time_zone,
        "list": records,
    }
