"""Admin endpoint for the sync history: `/api/v1/sync-history`."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from app.admin.dependencies import AnswerLanguage, DbSession
from app.admin.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from app.connections import service as connections
from app.connections.schemas import (
    EMPLOYEE_ID_EXAMPLE,
    ID_MAX_LENGTH,
    ID_PATTERN,
    ORGANIZATION_ID_EXAMPLE,
)
from app.history import service
from app.history.schemas import SyncRecordOut, SyncStatus
from app.http.problems import problem_responses

# bookingtime appointment ids are opaque strings (app/bookingtime/schemas.py: 1 to 64 characters).
APPOINTMENT_ID_EXAMPLE = "edAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

router = APIRouter(prefix="/api/v1/sync-history", tags=["sync history"])


@router.get(
    "",
    summary="Sync history",
    description=(
        "Every sync attempt with its outcome and readable error, newest first. Filter by "
        "organisation, employee, appointment and status; page with `cursor` = the previous "
        "`next_cursor`. "
        "Messages come in the language `Accept-Language` prefers (`de` or `en`, answered in "
        "`Content-Language`), rendered anew from their code and details; else each as it was "
        "written, in its connection's language."
    ),
    responses=problem_responses(400, 404, 422),
)
async def list_sync_history(
    session: DbSession,
    language: AnswerLanguage,
    organization_id: Annotated[
        str | None,
        Query(
            max_length=ID_MAX_LENGTH,
            pattern=ID_PATTERN,
            description="Only this organisation (404 if there is no such connection).",
            examples=[ORGANIZATION_ID_EXAMPLE],
        ),
    ] = None,
    employee_id: Annotated[
        str | None,
        Query(
            max_length=ID_MAX_LENGTH,
            pattern=ID_PATTERN,
            description="Only this employee (bookingtime booking-resource id).",
            examples=[EMPLOYEE_ID_EXAMPLE],
        ),
    ] = None,
    appointment_id: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=ID_MAX_LENGTH,
            description=(
                "Only this bookingtime appointment: every attempt to sync it, its skips and "
                "conflicts. With `organization_id` too, the lookup uses an index."
            ),
            examples=[APPOINTMENT_ID_EXAMPLE],
        ),
    ] = None,
    status: Annotated[
        SyncStatus | None,
        Query(description="Only this outcome (any other value is a 422).", examples=["failed"]),
    ] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[SyncRecordOut]:
    connection_id = None
    if organization_id is not None:
        connection = await connections.get_connection(session, organization_id=organization_id)
        connection_id = connection.id
    page = await service.list_sync_history(
        session,
        connection_id=connection_id,
        employee_id=employee_id,
        appointment_id=appointment_id,
        status=status,
        before_id=decode_cursor(cursor),
        limit=limit,
    )
    await session.commit()
    return Page[SyncRecordOut](
        items=[
            SyncRecordOut.build(r, organization_id=org, locale=language.asked)
            for r, org in page.records
        ],
        next_cursor=None if page.next_before_id is None else encode_cursor(page.next_before_id),
    )
