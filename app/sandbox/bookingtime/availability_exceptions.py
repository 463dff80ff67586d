"""availabilityException CRUD (reference §5): add, show, identify by customId, partial edit,
delete, and the organisation-wide and per-booking-resource lists and index pages. The `type`s
accepted are a switch, since only FREE is known."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.sandbox.bookingtime import render
from app.sandbox.bookingtime.appointments import ORGANIZATION_PATH
from app.sandbox.bookingtime.auth import OrganizationOf, store_of
from app.sandbox.bookingtime.envelope import MISSING, NOT_VALID, BookingtimeError, respond
from app.sandbox.bookingtime.listing import page_number, paged, whole
from app.sandbox.bookingtime.store import (
    EXCEPTION,
    AvailabilityException,
    Organization,
    Switches,
    new_id,
)

router = APIRouter(prefix=ORGANIZATION_PATH)

REQUIRED = ("name", "type", "bookingResourceId", "start", "end")
OPTIONAL = ("customId", "appointmentTemplateId")
NOT_FOUND = "Availability exception not found."


async def _body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if not raw.strip():
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        raise BookingtimeError(400, "The request body is not valid JSON.") from None
    if not isinstance(data, dict):
        raise BookingtimeError(400, "The request body must be a JSON object.")
    return data


def _instant(value: Any, parameter: str) -> datetime:
    """An ISO-8601 date-time with its offset, as every bookingtime request sends them."""
    try:
        parsed = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        parsed = None
    if parsed is None or parsed.tzinfo is None:
        raise BookingtimeError(
            400, "This value is not a valid ISO-8601 date-time with offset.", parameter=parameter
        )
    return parsed


def _changes(
    data: dict[str, Any], org: Organization, switches: Switches, *, creating: bool
) -> dict[str, Any]:
    """The validated fields of an add (all required ones) or an edit (any of them)."""
    changes: dict[str, Any] = {}
    for name in REQUIRED + OPTIONAL:
        if name not in data:
            if creating and name in REQUIRED:
                raise BookingtimeError(400, MISSING, parameter=name)
            continue
        value = data[name]
        if name in ("start", "end"):
            changes[name] = _instant(value, name)
        elif name in OPTIONAL and value is None:
            changes[name] = None
        elif not isinstance(value, str) or not value.strip():
            raise BookingtimeError(400, NOT_VALID, parameter=name)
        else:
            changes[name] = value
    allowed = sorted(switches.exception_types)
    if "type" in changes and changes["type"] not in allowed:
        raise BookingtimeError(
            400, f"{NOT_VALID} Allowed values: {', '.join(allowed)}.", parameter="type"
        )
    resource_id = changes.get("bookingResourceId")
    if resource_id is not None and resource_id not in org.booking_resources:
        raise BookingtimeError(400, NOT_VALID, parameter="bookingResourceId")
    return changes


def _check(org: Organization, item: AvailabilityException) -> None:
    if item.end <= item.start:
        raise BookingtimeError(400, "The end must be after the start.", parameter="end")
    if item.custom_id is not None:
        taken = org.exception_by_custom_id(item.custom_id)
        if taken is not None and taken.id != item.id:
            raise BookingtimeError(400, "This value is already used.", parameter="customId")


def _apply(item: AvailabilityException, changes: dict[str, Any]) -> None:
    for name, attribute in (
        ("name", "name"),
        ("type", "type"),
        ("bookingResourceId", "booking_resource_id"),
        ("start", "start"),
        ("end", "end"),
        ("customId", "custom_id"),
        ("appointmentTemplateId", "appointment_template_id"),
    ):
        if name in changes:
            setattr(item, attribute, changes[name])


@router.post("/availabilityException/add", status_code=201)
async def add(request: Request, org: OrganizationOf) -> JSONResponse:
    store = store_of(request)
    data = await _body(request)
    with store.lock:
        changes = _changes(data, org, store.switches, creating=True)
        now = store.clock.now()
        item = AvailabilityException(
            id=new_id(EXCEPTION),
            organization_id=org.id,
            name=changes["name"],
            type=changes["type"],
            booking_resource_id=changes["bookingResourceId"],
            start=changes["start"],
            end=changes["end"],
            custom_id=changes.get("customId"),
            appointment_template_id=changes.get("appointmentTemplateId"),
            created_at=now,
            edited_at=now,
        )
        _check(org, item)
        org.exceptions[item.id] = item
        content = render.availability_exception(item, org)
    return respond(content, status=201, success="Availability exception successfully added.")


def _found(org: Organization, exception_id: str) -> AvailabilityException:
    item = org.exceptions.get(exception_id)
    if item is None:
        raise BookingtimeError(404, NOT_FOUND, parameter="availabilityExceptionId")
    return item


@router.get("/availabilityException/{exception_id}/show")
async def show(request: Request, org: OrganizationOf, exception_id: str) -> JSONResponse:
    with store_of(request).lock:
        return respond(render.availability_exception(_found(org, exception_id), org))


@router.get("/availabilityException/{custom_id}/identify")
async def identify(request: Request, org: OrganizationOf, custom_id: str) -> JSONResponse:
    with store_of(request).lock:
        item = org.exception_by_custom_id(custom_id)
        if item is None:
            raise BookingtimeError(404, NOT_FOUND, parameter="customId")
        return respond(render.availability_exception(item, org))


@router.put("/availabilityException/{exception_id}/edit")
async def edit(request: Request, org: OrganizationOf, exception_id: str) -> JSONResponse:
    store = store_of(request)
    data = await _body(request)
    with store.lock:
        item = _found(org, exception_id)
        changes = _changes(data, org, store.switches, creating=False)
        edited = replace(item)
        _apply(edited, changes)
        _check(org, edited)
        edited.edited_at = store.clock.now()
        org.exceptions[item.id] = edited
        content = render.availability_exception(edited, org)
    return respond(content, success="Availability exception successfully edited.")


@router.delete("/availabilityException/{exception_id}/delete")
async def delete(request: Request, org: OrganizationOf, exception_id: str) -> JSONResponse:
    with store_of(request).lock:
        item = _found(org, exception_id)
        del org.exceptions[item.id]
    return respond([], success="Availability exception successfully deleted.")


def _of_resource(org: Organization, booking_resource_id: str) -> list[AvailabilityException]:
    if booking_resource_id not in org.booking_resources:
        raise BookingtimeError(404, "Booking resource not found.", parameter="bookingResourceId")
    return [i for i in org.exceptions.values() if i.booking_resource_id == booking_resource_id]


def _rendered(org: Organization, items: list[AvailabilityException]) -> list[dict[str, Any]]:
    items = sorted(items, key=lambda item: (item.start, item.id))
    return [render.availability_exception(item, org) for item in items]


@router.get("/availabilityException/list")
async def list_all(request: Request, org: OrganizationOf) -> JSONResponse:
    store = store_of(request)
    with store.lock:
        return whole(_rendered(org, list(org.exceptions.values())), store.switches)


@router.get("/availabilityException/index/{page}")
async def index_all(request: Request, org: OrganizationOf, page: str) -> JSONResponse:
    number = page_number(page)
    with store_of(request).lock:
        return paged(_rendered(org, list(org.exceptions.values())), number)


@router.get("/bookingResource/{booking_resource_id}/availabilityException/list")
async def list_for_resource(
    request: Request, org: OrganizationOf, booking_resource_id: str
) -> JSONResponse:
    store = store_of(request)
    with store.lock:
        return whole(_rendered(org, _of_resource(org, booking_resource_id)), store.switches)


@router.get("/bookingResource/{booking_resource_id}/availabilityException/index/{page}")
async def index_for_resource(
    request: Request, org: OrganizationOf, booking_resource_id: str, page: str
) -> JSONResponse:
    number = page_number(page)
    with store_of(request).lock:
        return paged(_rendered(org, _of_resource(org, booking_resource_id)), number)
