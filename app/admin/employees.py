"""Admin endpoints for employees: `/api/v1/connections/{organization_id}/employees[/{id}]`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Path, Request, Response, status

from app.admin.connections import DbSession, OrganizationId, get_graph, get_secret_box
from app.connections import checks, service
from app.connections.schemas import (
    EMPLOYEE_ID_EXAMPLE,
    ID_MAX_LENGTH,
    ID_PATTERN,
    EmployeeIn,
    EmployeeOut,
    EmployeePutOut,
    MailboxCheckOut,
)
from app.crypto import SecretBox
from app.problems import problem_responses
from app.sync.graph_clients import GraphClients

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
        "status fields. Then the mailbox is checked against Microsoft Graph: the result is in "
        "`mailbox_check` and, when it failed, in the status fields. When Graph cannot be "
        "reached the mapping is accepted all the same (`mailbox_check.code` `check_pending`) "
        "and checked in the background."
    ),
    status_code=status.HTTP_200_OK,
    responses={
        200: {"description": "Updated"},
        201: {"model": EmployeePutOut, "description": "Created"},
        **problem_responses(404, 409, 422),
    },
)
async def put_employee(
    organization_id: OrganizationId,
    employee_id: EmployeeId,
    body: EmployeeIn,
    response: Response,
    request: Request,
    session: DbSession,
    secret_box: Annotated[SecretBox, Depends(get_secret_box)],
    graph: Annotated[GraphClients, Depends(get_graph)],
) -> EmployeePutOut:
    employee, created = await service.put_employee(
        session, organization_id=organization_id, employee_id=employee_id, data=body
    )
    connection = await service.get_connection(session, organization_id=organization_id)
    await session.commit()
    if created:
        response.status_code = status.HTTP_201_CREATED
    # Checked outside the transaction: no database lock is held while Graph answers.
    result = await checks.check_mailbox(
        connection,
        employee.mailbox,
        graph=graph,
        secret_box=secret_box,
        locale=connection.locale,
        wait_seconds=checks.EMPLOYEE_CHECK_TIMEOUT,
    )
    if result.pending:
        result = checks.pending_result(employee.mailbox, connection.locale)
    await service.record_mailbox_check(session, employee=employee, result=result)
    await session.commit()
    if result.pending:
        request.app.state.wake_worker()
    out = EmployeeOut.build(employee, organization_id=organization_id)
    check = MailboxCheckOut(ok=result.ok, code=result.code, message=result.message)
    return EmployeePutOut(**out.model_dump(), mailbox_check=check)


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
