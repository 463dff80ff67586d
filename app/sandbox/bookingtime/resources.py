"""Who can be booked, read-only as the App API has it: booking resources, employees, and the
native calendar synchronizations that tie a booking resource to a mailbox, each as a `list` and
as `index/{page}` pages."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.sandbox.bookingtime import render
from app.sandbox.bookingtime.appointments import ORGANIZATION_PATH
from app.sandbox.bookingtime.auth import OrganizationOf, store_of
from app.sandbox.bookingtime.envelope import BookingtimeError, respond
from app.sandbox.bookingtime.listing import page_number, paged, whole
from app.sandbox.bookingtime.store import Organization

router = APIRouter(prefix=ORGANIZATION_PATH)


def _booking_resources(org: Organization) -> list[dict[str, Any]]:
    return [render.booking_resource(r) for r in org.booking_resources.values()]


def _employees(org: Organization) -> list[dict[str, Any]]:
    return [render.employee(e) for e in org.employees.values()]


def _synchronizations(org: Organization) -> list[dict[str, Any]]:
    return [render.synchronization(s) for s in org.synchronizations.values()]


@router.get("/bookingResource/list")
async def booking_resources(request: Request, org: OrganizationOf) -> JSONResponse:
    store = store_of(request)
    with store.lock:
        return whole(_booking_resources(org), store.switches)


@router.get("/bookingResource/index/{page}")
async def booking_resource_page(request: Request, org: OrganizationOf, page: str) -> JSONResponse:
    number = page_number(page)
    with store_of(request).lock:
        return paged(_booking_resources(org), number)


@router.get("/bookingResource/{booking_resource_id}/show")
async def booking_resource(
    request: Request, org: OrganizationOf, booking_resource_id: str
) -> JSONResponse:
    with store_of(request).lock:
        resource = org.booking_resources.get(booking_resource_id)
        if resource is None:
            raise BookingtimeError(
                404, "Booking resource not found.", parameter="bookingResourceId"
            )
        return respond(render.booking_resource(resource))


@router.get("/employee/list")
async def employees(request: Request, org: OrganizationOf) -> JSONResponse:
    store = store_of(request)
    with store.lock:
        return whole(_employees(org), store.switches)


@router.get("/employee/index/{page}")
async def employee_page(request: Request, org: OrganizationOf, page: str) -> JSONResponse:
    number = page_number(page)
    with store_of(request).lock:
        return paged(_employees(org), number)


@router.get("/employee/{employee_id}/show")
async def employee(request: Request, org: OrganizationOf, employee_id: str) -> JSONResponse:
    with store_of(request).lock:
        person = org.employees.get(employee_id)
        if person is None:
            raise BookingtimeError(404, "Employee not found.", parameter="employeeId")
        return respond(render.employee(person))


@router.get("/synchronization/list")
async def synchronizations(request: Request, org: OrganizationOf) -> JSONResponse:
    store = store_of(request)
    with store.lock:
        return whole(_synchronizations(org), store.switches)


@router.get("/synchronization/index/{page}")
async def synchronization_page(request: Request, org: OrganizationOf, page: str) -> JSONResponse:
    number = page_number(page)
    with store_of(request).lock:
        return paged(_synchronizations(org), number)
