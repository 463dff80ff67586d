"""The bookingtime control API over HTTP, under `/_sandbox/bookingtime`: thin routes over
`BookingtimeControl`, for a demo or a benchmark driving a sandbox in another process. The
sandbox's control router takes these routes in as its own."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, TypeVar, cast

from fastapi import APIRouter, HTTPException, Request
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from app.sandbox.bookingtime.control import BookingtimeControl

router = APIRouter(prefix="/_sandbox/bookingtime", tags=["sandbox control: bookingtime"])
T = TypeVar("T")


def _control(request: Request) -> BookingtimeControl:
    return cast(BookingtimeControl, request.app.state.control.bookingtime)


def _call(action: Callable[[], T]) -> T:
    try:
        return action()
    except KeyError as exc:
        raise HTTPException(404, detail=str(exc.args[0]) if exc.args else "not found") from exc
    except ValueError as exc:
        raise HTTPException(400, detail=str(exc)) from exc


class AppIn(BaseModel):
    client_id: str | None = None
    secret: str | None = None


class OrganizationIn(BaseModel):
    organization_id: str | None = None
    time_zone: str = "Europe/Berlin"
    name: str = "Praxis"


class PermitIn(BaseModel):
    allowed: bool = True


class BookingResourceIn(BaseModel):
    name: str
    category: str = "EMPLOYEE"
    custom_id: str | None = None


class EmployeeIn(BaseModel):
    first_name: str
    last_name: str
    email: str | None = None
    custom_id: str | None = None


class SynchronizationIn(BaseModel):
    booking_resource_id: str
    email: str
    type: str = "GRAPH"


class BookIn(BaseModel):
    start: AwareDatetime
    end: AwareDatetime
    booking_resource_ids: list[str]
    name: str = "Termin"
    notes: str | None = None
    customer: dict[str, Any] | None = None
    address: dict[str, Any] | None = None
    custom_id: str | None = None


class EditIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str | None = None
    description: str | None = None
    notes: str | None = None
    customer: dict[str, Any] | None = None
    address: dict[str, Any] | None = None
    custom_id: str | None = None


class MoveIn(BaseModel):
    start: AwareDatetime
    end: AwareDatetime


class ReassignIn(BaseModel):
    booking_resource_ids: list[str]


class SwitchesIn(BaseModel):
    list_canceled: bool | None = None
    timestamp_edit: bool | None = None
    exception_types: list[str] | None = None
    list_limit: int | None = Field(default=None, ge=0)


class TokenLifetimesIn(BaseModel):
    access_seconds: float | None = None
    refresh_seconds: float | None = None


@router.post("/apps", status_code=201, summary="Register a bookingtime app (client id and secret)")
async def http_add_app(request: Request, body: AppIn) -> dict[str, str]:
    client_id, secret = _call(lambda: _control(request).add_app(body.client_id, body.secret))
    return {"client_id": client_id, "client_secret": secret}


@router.post(
    "/organizations", status_code=201, summary="Add a bookingtime organization (its time zone)"
)
async def http_add_organization(request: Request, body: OrganizationIn) -> dict[str, str]:
    org = _call(
        lambda: _control(request).add_organization(
            body.organization_id, time_zone=body.time_zone, name=body.name
        )
    )
    return {"organization_id": org}


@router.put(
    "/apps/{client_id}/organizations/{organization_id}",
    summary="Permit (or stop) an app acting for an organization",
)
async def http_permit(
    request: Request, client_id: str, organization_id: str, body: PermitIn
) -> dict[str, Any]:
    _call(lambda: _control(request).permit(client_id, organization_id, allowed=body.allowed))
    return {"client_id": client_id, "organization_id": organization_id, "allowed": body.allowed}


@router.post(
    "/organizations/{organization_id}/booking-resources",
    status_code=201,
    summary="Add a booking resource to an organization",
)
async def http_add_booking_resource(
    request: Request, organization_id: str, body: BookingResourceIn
) -> dict[str, str]:
    resource_id = _call(
        lambda: _control(request).add_booking_resource(
            organization_id, name=body.name, category=body.category, custom_id=body.custom_id
        )
    )
    return {"id": resource_id}


@router.post(
    "/organizations/{organization_id}/employees",
    status_code=201,
    summary="Add an employee to an organization",
)
async def http_add_employee(
    request: Request, organization_id: str, body: EmployeeIn
) -> dict[str, str]:
    employee_id = _call(
        lambda: _control(request).add_employee(
            organization_id,
            first_name=body.first_name,
            last_name=body.last_name,
            email=body.email,
            custom_id=body.custom_id,
        )
    )
    return {"id": employee_id}


@router.post(
    "/organizations/{organization_id}/synchronizations",
    status_code=201,
    summary="Add bookingtime's own calendar sync for a booking resource",
)
async def http_add_synchronization(
    request: Request, organization_id: str, body: SynchronizationIn
) -> dict[str, str]:
    sync_id = _call(
        lambda: _control(request).add_synchronization(
            organization_id, body.booking_resource_id, body.email, type=body.type
        )
    )
    return {"id": sync_id}


@router.post(
    "/organizations/{organization_id}/appointments",
    status_code=201,
    summary="Book an appointment as a customer or the staff would in bookingtime",
)
async def http_book(request: Request, organization_id: str, body: BookIn) -> dict[str, str]:
    appointment_id = _call(
        lambda: _control(request).book(
            organization_id,
            start=body.start,
            end=body.end,
            booking_resource_ids=body.booking_resource_ids,
            name=body.name,
            notes=body.notes,
            customer=body.customer,
            address=body.address,
            custom_id=body.custom_id,
        )
    )
    return {"id": appointment_id}


@router.get(
    "/organizations/{organization_id}/appointments/{appointment_id}",
    summary="An appointment as the App API shows it",
)
async def http_appointment(
    request: Request, organization_id: str, appointment_id: str
) -> dict[str, Any]:
    return _call(lambda: _control(request).appointment(organization_id, appointment_id))


@router.patch(
    "/organizations/{organization_id}/appointments/{appointment_id}",
    summary="Edit an appointment's name, description, notes, customer, address or custom id",
)
async def http_edit(
    request: Request, organization_id: str, appointment_id: str, body: EditIn
) -> dict[str, Any]:
    fields = body.model_dump(exclude_unset=True)
    control = _control(request)
    _call(lambda: control.edit(organization_id, appointment_id, **fields))
    return _call(lambda: control.appointment(organization_id, appointment_id))


@router.post(
    "/organizations/{organization_id}/appointments/{appointment_id}/move",
    summary="Move an appointment to another time",
)
async def http_move(
    request: Request, organization_id: str, appointment_id: str, body: MoveIn
) -> dict[str, Any]:
    control = _control(request)
    _call(lambda: control.move(organization_id, appointment_id, start=body.start, end=body.end))
    return _call(lambda: control.appointment(organization_id, appointment_id))


@router.put(
    "/organizations/{organization_id}/appointments/{appointment_id}/booking-resources",
    summary="Give an appointment to other booking resources",
)
async def http_reassign(
    request: Request, organization_id: str, appointment_id: str, body: ReassignIn
) -> dict[str, Any]:
    control = _control(request)
    _call(lambda: control.reassign(organization_id, appointment_id, body.booking_resource_ids))
    return _call(lambda: control.appointment(organization_id, appointment_id))


@router.post(
    "/organizations/{organization_id}/appointments/{appointment_id}/cancel",
    summary="Cancel an appointment (it stays, marked canceled)",
)
async def http_cancel(
    request: Request, organization_id: str, appointment_id: str
) -> dict[str, Any]:
    control = _control(request)
    _call(lambda: control.cancel(organization_id, appointment_id))
    return _call(lambda: control.appointment(organization_id, appointment_id))


@router.delete(
    "/organizations/{organization_id}/appointments/{appointment_id}",
    status_code=204,
    summary="Delete an appointment without a trace (show answers 404 afterwards)",
)
async def http_hard_delete(request: Request, organization_id: str, appointment_id: str) -> None:
    _call(lambda: _control(request).hard_delete(organization_id, appointment_id))


@router.get(
    "/organizations/{organization_id}/exceptions",
    summary="An organization's availability exceptions, as stored",
)
async def http_exceptions(request: Request, organization_id: str) -> list[dict[str, Any]]:
    return _call(lambda: _control(request).exceptions(organization_id))


def _switches_out(control: BookingtimeControl) -> dict[str, Any]:
    switches = control.switches
    return {
        "list_canceled": switches.list_canceled,
        "timestamp_edit": switches.timestamp_edit,
        "exception_types": sorted(switches.exception_types),
        "list_limit": switches.list_limit,
    }


@router.get("/switches", summary="The answers chosen for what bookingtime leaves unknown")
async def http_switches(request: Request) -> dict[str, Any]:
    return _switches_out(_control(request))


@router.put(
    "/switches",
    summary="Choose whether lists show canceled appointments, timestampEdit, exception types"
    " and how many records a LIST holds",
)
async def http_set_switches(request: Request, body: SwitchesIn) -> dict[str, Any]:
    control = _control(request)
    if body.list_canceled is not None:
        control.switches.list_canceled = body.list_canceled
    if body.timestamp_edit is not None:
        control.switches.timestamp_edit = body.timestamp_edit
    if body.exception_types is not None:
        control.switches.exception_types = frozenset(body.exception_types)
    if body.list_limit is not None:
        control.switches.list_limit = body.list_limit
    return _switches_out(control)


@router.put("/token-lifetimes", summary="Set the lifetimes of access and refresh tokens")
async def http_token_lifetimes(request: Request, body: TokenLifetimesIn) -> dict[str, Any]:
    _control(request).set_token_lifetimes(
        access=timedelta(seconds=body.access_seconds) if body.access_seconds else None,
        refresh=timedelta(seconds=body.refresh_seconds) if body.refresh_seconds else None,
    )
    return body.model_dump()


@router.get("/stats", summary="Token requests served, by grant type and organization")
async def http_stats(request: Request) -> dict[str, Any]:
    counts = _control(request).token_requests
    return {
        "token_requests": [
            {"grant_type": grant_type, "organization_id": org, "count": count}
            for (grant_type, org), count in sorted(counts.items(), key=str)
        ]
    }
