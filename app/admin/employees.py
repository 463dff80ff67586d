"""Admin endpoints for employees: `/api/v1/connections/{organization_id}/employees[/{id}]`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin.dependencies import (
    AnswerLanguage,
    AppSettings,
    DbSession,
    EmployeeId,
    Language,
    OrganizationId,
    get_graph,
    get_secret_box,
)
from app.config import Settings
from app.connections import checks, employee_service, service
from app.connections.employee_schemas import (
    EmployeeIn,
    EmployeeOut,
    EmployeePutOut,
    MailboxCheckOut,
    RemovalOut,
    ResyncOut,
    last_error_text,
)
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.history.messages import message
from app.http.problems import problem_responses
from app.models import Employee
from app.notifications import outcomes
from app.notifications import repository as subscription_rows
from app.notifications import service as subscriptions

router = APIRouter(prefix="/api/v1/connections/{organization_id}/employees", tags=["employees"])


async def _out(
    session: AsyncSession,
    settings: Settings,
    organization_id: str,
    employees: list[Employee],
    language: Language,
) -> list[EmployeeOut]:
    """The employees with their mailboxes' subscription status, in the answer's language."""
    if not employees:
        return []
    connection = await service.get_connection(session, organization_id=organization_id)
    locale = language.of(connection.locale)
    mailboxes = [e.mailbox for e in employees]
    status = await subscriptions.statuses(
        session, settings, connection_id=connection.id, mailboxes=mailboxes, locale=locale
    )
    known = {"tenant": connection.tenant, "client_id": connection.client_id}
    asked = language.asked
    if asked is not None:
        # A stored error is in the language it was written in: told anew where its code and
        # what is known of its params allow.
        rows = await subscription_rows.for_mailboxes(
            session, connection_id=connection.id, mailboxes=mailboxes
        )
        for key, row in rows.items():
            shown = status.get(key)
            if shown is not None and shown.state != subscriptions.DISABLED and shown.message:
                shown.message = outcomes.last_error_text(row, asked, **known) or shown.message
    return [
        EmployeeOut.build(
            e,
            organization_id=organization_id,
            subscription=status.get(e.mailbox.casefold()),
            error_message=None if asked is None else last_error_text(e, asked, **known),
        )
        for e in employees
    ]


@router.get(
    "",
    summary="List employees",
    description="The connection's employees with their sync status, ordered by employee id.",
    responses=problem_responses(404, 422),
)
async def list_employees(
    organization_id: OrganizationId,
    session: DbSession,
    settings: AppSettings,
    language: AnswerLanguage,
) -> list[EmployeeOut]:
    employees = await employee_service.list_employees(session, organization_id=organization_id)
    out = await _out(session, settings, organization_id, employees, language)
    await session.commit()
    return out


@router.put(
    "/{employee_id}",
    summary="Map an employee to a mailbox",
    description=(
        "Creates (`201`) or updates (`200`) the mapping of a bookingtime booking resource to an "
        "Outlook mailbox. The address syntax is checked here; a changed mailbox clears the "
        "status fields. Then the mailbox is checked against Microsoft Graph: the result is in "
        "`mailbox_check` and, when it failed, in the status fields. When Graph cannot be "
        "reached the mapping is accepted all the same (`mailbox_check.code` `check_pending`) "
        "and checked in the background. A new or moved mapping (or one that showed an error "
        "before) then syncs the appointments calbridge already holds for the employee, in the "
        "background (`backfill_queued`), unless the check failed."
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
    settings: AppSettings,
    language: AnswerLanguage,
) -> EmployeePutOut:
    put = await employee_service.put_employee(
        session, organization_id=organization_id, employee_id=employee_id, data=body
    )
    employee = put.employee
    connection = await service.get_connection(session, organization_id=organization_id)
    await session.commit()
    if put.created:
        response.status_code = status.HTTP_201_CREATED
    # Checked outside the transaction: no database lock is held while Graph answers. In the
    # connection's language, as the employee's status keeps it; the answer tells it in its own.
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
    backfill = await employee_service.record_mailbox_check(session, put=put, result=result)
    subscribe = result.ok is not False and settings.public_url is not None
    (out,) = await _out(session, settings, organization_id, [employee], language)
    await session.commit()
    if result.pending or backfill or subscribe:
        request.app.state.wake_worker()
    locale = language.of(connection.locale)
    check = MailboxCheckOut(ok=result.ok, code=result.code, message=result.message_in(locale))
    return EmployeePutOut(**out.model_dump(), mailbox_check=check, backfill_queued=backfill)


@router.get(
    "/{employee_id}",
    summary="Get an employee",
    responses=problem_responses(404, 422),
)
async def get_employee(
    organization_id: OrganizationId,
    employee_id: EmployeeId,
    session: DbSession,
    settings: AppSettings,
    language: AnswerLanguage,
) -> EmployeeOut:
    employee = await service.get_employee(
        session, organization_id=organization_id, employee_id=employee_id
    )
    (out,) = await _out(session, settings, organization_id, [employee], language)
    await session.commit()
    return out


@router.delete(
    "/{employee_id}",
    summary="Delete an employee",
    description=(
        "Removes the mailbox mapping; the employee's sync history is kept. Without "
        "`remove_events` the events calbridge wrote stay in Outlook (each is removed when its "
        "appointment next changes). With `remove_events=true` they are deleted from the mailbox "
        "in the background: the answer (`202`, or `200` when there was nothing to remove) says "
        "how many, and checks the mailbox first, so broken credentials are reported at once; "
        "the removal then waits for working credentials and runs when they are fixed."
    ),
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses={
        200: {"model": RemovalOut, "description": "Deleted; no calbridge events to remove"},
        202: {"model": RemovalOut, "description": "Deleted; events queued for removal"},
        204: {"description": "Deleted (without `remove_events`)"},
        **problem_responses(404, 422),
    },
)
async def delete_employee(
    organization_id: OrganizationId,
    employee_id: EmployeeId,
    session: DbSession,
    request: Request,
    secret_box: Annotated[SecretBox, Depends(get_secret_box)],
    graph: Annotated[GraphClients, Depends(get_graph)],
    language: AnswerLanguage,
    remove_events: Annotated[
        bool,
        Query(description="Also delete the events calbridge wrote to the employee's mailbox."),
    ] = False,
) -> Response:
    deleted = await employee_service.delete_employee(
        session,
        organization_id=organization_id,
        employee_id=employee_id,
        remove_events=remove_events,
    )
    await session.commit()
    if not remove_events:
        return Response(status_code=status.HTTP_204_NO_CONTENT)
    connection = deleted.connection
    locale = language.of(connection.locale)
    params = {"count": deleted.events, "employee": employee_id, "mailbox": deleted.mailbox}
    if not deleted.events:
        out = RemovalOut(
            organization_id=organization_id,
            employee_id=employee_id,
            mailbox=deleted.mailbox,
            events=0,
            mailbox_check=None,
            message=message("removal_none", locale, params),
        )
        return JSONResponse(
            out.model_dump(mode="json"), status_code=status.HTTP_200_OK, headers=language.headers()
        )
    request.app.state.wake_worker()
    result = await checks.check_mailbox(
        connection,
        deleted.mailbox,
        graph=graph,
        secret_box=secret_box,
        locale=locale,
        wait_seconds=checks.EMPLOYEE_CHECK_TIMEOUT,
    )
    if result.ok is False:
        text = message("removal_blocked", locale, {**params, "reason": result.message})
    else:
        text = message("removal_queued", locale, params)
    out = RemovalOut(
        organization_id=organization_id,
        employee_id=employee_id,
        mailbox=deleted.mailbox,
        events=deleted.events,
        mailbox_check=MailboxCheckOut(ok=result.ok, code=result.code, message=result.message),
        message=text,
    )
    return JSONResponse(
        out.model_dump(mode="json"),
        status_code=status.HTTP_202_ACCEPTED,
        headers=language.headers(),
    )


@router.post(
    "/{employee_id}/resync",
    summary="Resync an employee",
    description=(
        "Re-plans all of the employee's appointments that calbridge holds (those ending from "
        "yesterday on, and every one with a calbridge event) and writes each event again in "
        "full, in the background: edits made in Outlook are overwritten and deleted events "
        "come back. The sync history shows each step."
    ),
    status_code=status.HTTP_202_ACCEPTED,
    responses=problem_responses(404, 422),
)
async def resync_employee(
    organization_id: OrganizationId,
    employee_id: EmployeeId,
    session: DbSession,
    request: Request,
    language: AnswerLanguage,
) -> ResyncOut:
    employee = await service.get_employee(
        session, organization_id=organization_id, employee_id=employee_id
    )
    connection = await service.get_connection(session, organization_id=organization_id)
    queued = await employee_service.queue_employee_sync(session, employee=employee, reason="resync")
    await session.commit()
    request.app.state.wake_worker()
    params = {"employee": employee_id, "mailbox": employee.mailbox}
    return ResyncOut(
        organization_id=organization_id,
        employee_id=employee_id,
        mailbox=employee.mailbox,
        queued=queued,
        message=message(
            "resync_accepted" if queued else "resync_waiting",
            language.of(connection.locale),
            params,
        ),
    )
