"""Admin endpoints for employees: `/api/v1/connections/{organization_id}/employees[/{id}]`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response, status

from app.admin.connections import DbSession, OrganizationId
from app.connections import service
from app.connections.schemas import (
    EMPLOYEE_ID_EXAMPLE,
    ID_MAX_LENGTH,
    ID_PATTERN,
    EmployeeIn,
    EmployeeOut,
)
from app.problems import problem_responses

router = APIRouter(prefix="/api/v1/connections/{organization_id}/employees", tags=["employees"])

EmployeeId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description="bookingtime booking-resource id of the employee.",
        examples=[EMPLOYEE_ID_EXAMPLE],
    ),
]


@router.get(
    "",
    summary="List employees",
    description="The connection's employees with their sync status, ordered by employee id.",
    responses=problem_responses(404, 422),
)
async def list_employees(organization_id: OrganizationId, session: DbSession) -> list[EmployeeOut]:
    employees = await service.list_employees(session, organization_id=organization_id)
    await session.commit()
    return [EmployeeOut.build(e, organization_id=organization_id) for e in employees]


@router.put(
    "/{employee_id}",
    summary="Map an employee to a mailbox",
    description=(
        "Creates (`201`) or updates (`200`) the mapping of a bookingtime booking resource to an "
        "Outlook mailbox. The address syntax is checked here; a changed mailbox clears the "
        "status fields. Whether the mailbox exists shows in the sync history."
    ),
    status_code=status.HTTP_200_OK,
    responses={
        200: {"description": "Updated"},
        201: {"model": EmployeeOut, "description": "Created"},
        **problem_responses(404, 409, 422),
    },
)
async def put_employee(
    organization_id: OrganizationId,
    employee_id: EmployeeId,
    body: EmployeeIn,
    response: Response,
    session: DbSession,
) -> EmployeeOut:
    employee, created = await service.put_employee(
        session, organization_id=organization_id, employee_id=employee_id, data=body
    )
    await session.commit()
    if created:
        response.status_code = status.HTTP_201_CREATED
    return EmployeeOut.build(employee, organization_id=organization_id)


@router.get(
    "/{employee_id}",
    summary="Get an employee",
    responses=problem_responses(404, 422),
)
async def get_employee(
    organization_id: OrganizationId, employee_id: EmployeeId, session: DbSession
) -> EmployeeOut:
    employee = await service.get_employee(
        session, organization_id=organization_id, employee_id=employee_id
    )
    await session.commit()
    return EmployeeOut.build(employee, organization_id=organization_id)


@router.delete(
    "/{employee_id}",
    summary="Delete an employee",
    description="Removes the mailbox mapping. The employee's sync history is kept.",
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(404, 422),
)
async def delete_employee(
    organization_id: OrganizationId, employee_id: EmployeeId, session: DbSession
) -> None:
    await service.delete_employee(session, organization_id=organization_id, employee_id=employee_id)
    await session.commit()
