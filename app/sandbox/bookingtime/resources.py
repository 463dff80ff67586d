"""Who can be booked, read-only as the App API has it: booking resources, employees, and the
native calendar synchronizations that tie a booking resource to a mailbox."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.sandbox.bookingtime import render
from app.sandbox.bookingtime.appointments import ORGANIZATION_PATH
from app.sandbox.bookingtime.auth import OrganizationOf, store_of
from app.sandbox.bookingtime.envelope import BookingtimeError, respond

router = APIRouter(prefix=ORGANIZATION_PATH)


@router.get("/bookingResource/list")
async def booking_resources(request: Request, org: OrganizationOf) -> JSONResponse:
    with store_of(request).lock:
        records = [render.booking_resource(r) for r in org.booking_resources.values()]
    return respond(render.record_list(records))


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
    with store_of(request).lock:
        records = [render.employee(e) for e in org.employees.values()]
    return respond(render.record_list(records))


@router.get("/employee/{employee_id}/show")
async def employee(request: Request, org: OrganizationOf, employee_id: str) -> JSONResponse:
    with store_of(request).lock:
        person = org.employees.get(employee_id)
        if person is None:
            raise BookingtimeError(404, "Employee not found.", parameter="employeeId")
        return respond(render.employee(person))


@router.get("/synchronization/list")
async def synchronizations(request: Request, org: OrganizationOf) -> JSONResponse:
    with store_of(request).lock:
        records = [render.synchronization(s) for s in org.synchronizations.values()]
    return respond(render.record_list(records))
