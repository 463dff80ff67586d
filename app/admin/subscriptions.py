"""Admin endpoints for Graph subscriptions: list them, create or recreate an employee's,
renew or delete one. Graph is called by the queued jobs, never in the request."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Query, Request, Response, status
from pydantic import BaseModel, ConfigDict, Field

from app.admin.dependencies import (
    AnswerLanguage,
    AppSettings,
    DbSession,
    EmployeeId,
    OrganizationId,
)
from app.admin.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from app.config import Settings
from app.connections import service
from app.connections.schemas import ID_MAX_LENGTH, ID_PATTERN, ORGANIZATION_ID_EXAMPLE
from app.history.messages import message
from app.http.problems import ProblemError, problem_responses
from app.models import Subscription
from app.notifications import outcomes, repository
from app.notifications import service as subscriptions

router = APIRouter(tags=["subscriptions"])

_EXAMPLE: dict[str, Any] = {
    "id": 7,
    "organization_id": ORGANIZATION_ID_EXAMPLE,
    "mailbox": "max.mustermann@contoso.com",
    "state": "active",
    "graph_subscription_id": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
    "expires_at": "2026-12-03T09:30:00Z",
    "last_notification_at": "2026-11-26T10:01:58Z",
    "last_renewed_at": "2026-11-26T09:30:00Z",
    "last_reauthorized_at": None,
    "last_error_at": None,
    "last_error_code": None,
    "last_error_message": None,
    "created_at": "2026-11-26T09:30:00Z",
    "updated_at": "2026-11-26T09:30:00Z",
}


class SubscriptionOut(BaseModel):
    """One mailbox's change-notification subscription (its clientState is never shown)."""

    model_config = ConfigDict(json_schema_extra={"examples": [_EXAMPLE]})

    id: int
    organization_id: str
    mailbox: str
    state: Literal["pending", "active", "failed", "disabled"]
    graph_subscription_id: str | None = Field(description="Graph's id; null until created.")
    expires_at: datetime | None = Field(description="When Graph ends it unless renewed.")
    last_notification_at: datetime | None
    last_renewed_at: datetime | None
    last_reauthorized_at: datetime | None
    last_error_at: datetime | None
    last_error_code: str | None
    last_error_message: str | None = Field(
        description="Readable reason of the last failure, as written in the connection's "
        "language; with `Accept-Language`, told anew in that language where its code allows."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def build(
        cls, row: Subscription, *, organization_id: str, locale: str | None = None
    ) -> SubscriptionOut:
        """The response for a row; with `locale`, its last error told anew in that language."""
        retold = None if locale is None else outcomes.last_error_text(row, locale)
        return cls(
            id=row.id,
            organization_id=organization_id,
            mailbox=row.mailbox,
            state=row.state,
            graph_subscription_id=row.graph_subscription_id,
            expires_at=row.expires_at,
            last_notification_at=row.last_notification_at,
            last_renewed_at=row.last_renewed_at,
            last_reauthorized_at=row.last_reauthorized_at,
            last_error_at=row.last_error_at,
            last_error_code=row.last_error_code,
            last_error_message=retold or row.last_error_message,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


class SubscriptionQueuedOut(BaseModel):
    """A subscription job, queued."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "mailbox": "max.mustermann@contoso.com",
                    "action": "recreate",
                    "queued": True,
                    "subscription_id": 7,
                }
            ]
        }
    )

    mailbox: str
    action: Literal["create", "recreate", "renew"]
    queued: bool = Field(description="False: the same job was already waiting.")
    subscription_id: int | None = Field(description="The subscription row, once there is one.")


def _problem_example(status_code: int, code: str, title: str, detail: str) -> dict[str, Any]:
    return {
        "summary": code,
        "value": {
            "type": f"https://calbridge.dev/problems/{code}",
            "title": title,
            "status": status_code,
            "code": code,
            "detail": detail,
            "instance": "/api/v1/subscriptions/7/renew",
        },
    }


_NOT_FOUND = _problem_example(
    404, "subscription_not_found", "Subscription not found", "no subscription 7"
)
_DISABLED = _problem_example(
    409,
    "subscriptions_disabled",
    "Subscriptions are off",
    "Change notifications for max.mustermann@contoso.com are off: CALBRIDGE_PUBLIC_URL is not "
    "set, so Microsoft Graph cannot reach calbridge.",
)
_NOT_ACTIVE = _problem_example(
    409,
    "subscription_not_active",
    "The subscription is not active",
    "subscription 7 is pending: create it with POST "
    "/api/v1/connections/{organization_id}/employees/{employee_id}/subscription",
)


def _with_examples(
    statuses: tuple[int, ...], examples: dict[int, dict[str, Any]]
) -> dict[int | str, dict[str, Any]]:
    responses = problem_responses(*statuses)
    for status_code, named in examples.items():
        responses[status_code]["content"]["application/problem+json"]["examples"] = named
    return responses


def _not_found(subscription_id: int) -> ProblemError:
    return ProblemError(
        404,
        "subscription_not_found",
        "Subscription not found",
        f"no subscription {subscription_id}",
    )


def _check_enabled(settings: Settings, mailbox: str, locale: str) -> None:
    off = subscriptions.disabled_reason(settings, mailbox)
    if off is not None:
        raise ProblemError(
            409, "subscriptions_disabled", "Subscriptions are off", message(off[0], locale, off[1])
        )


# le: ids are BIGINT; a larger number is no subscription and would overflow the database driver.
SubscriptionId = Annotated[
    int, Path(ge=1, le=2**63 - 1, description="calbridge's subscription id.")
]


@router.get(
    "/api/v1/subscriptions",
    summary="List subscriptions",
    description=(
        "Every mailbox's change-notification subscription with its state, expiry and last "
        "notification, newest first. Filter by organisation; page with `cursor` = the previous "
        "`next_cursor`."
    ),
    responses=problem_responses(400, 404, 422),
)
async def list_subscriptions(
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
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[SubscriptionOut]:
    before_id = decode_cursor(cursor)
    if organization_id is not None:
        await service.get_connection(session, organization_id=organization_id)
    rows = await repository.list_page(
        session, organization_id=organization_id, before_id=before_id, limit=limit + 1
    )
    await session.commit()
    more = len(rows) > limit
    rows = rows[:limit]
    return Page[SubscriptionOut](
        items=[
            SubscriptionOut.build(row, organization_id=org, locale=language.asked)
            for row, org in rows
        ],
        next_cursor=encode_cursor(rows[-1][0].id) if more and rows else None,
    )


@router.post(
    "/api/v1/connections/{organization_id}/employees/{employee_id}/subscription",
    summary="Create or recreate an employee's subscription",
    description=(
        "Queues the creation of the change-notification subscription of the employee's mailbox; "
        "when one is on record it is replaced (deleted in Graph, created anew) and the mailbox "
        "is fully resynced afterwards. `409 subscriptions_disabled` without a usable "
        "`CALBRIDGE_PUBLIC_URL`."
    ),
    status_code=status.HTTP_202_ACCEPTED,
    responses=_with_examples((404, 409, 422), {409: {"subscriptions_disabled": _DISABLED}}),
)
async def create_subscription(
    organization_id: OrganizationId,
    employee_id: EmployeeId,
    session: DbSession,
    request: Request,
    settings: AppSettings,
    language: AnswerLanguage,
) -> SubscriptionQueuedOut:
    employee = await service.get_employee(
        session, organization_id=organization_id, employee_id=employee_id
    )
    connection = await service.get_connection(session, organization_id=organization_id)
    _check_enabled(settings, employee.mailbox, language.of(connection.locale))
    queued = await subscriptions.queue_create(
        session, connection_id=connection.id, mailbox=employee.mailbox
    )
    await session.commit()
    request.app.state.wake_worker()
    return SubscriptionQueuedOut(
        mailbox=queued.mailbox,
        action="recreate" if queued.recreate else "create",
        queued=queued.queued,
        subscription_id=queued.subscription_id,
    )


@router.post(
    "/api/v1/subscriptions/{subscription_id}/renew",
    summary="Renew a subscription now",
    description=(
        "Queues a renewal (a PATCH of its expiry to the maximum). Graph answering that it no "
        "longer has the subscription makes the job recreate it and resync the mailbox."
    ),
    status_code=status.HTTP_202_ACCEPTED,
    responses=_with_examples(
        (404, 409, 422),
        {
            404: {"subscription_not_found": _NOT_FOUND},
            409: {"subscription_not_active": _NOT_ACTIVE, "subscriptions_disabled": _DISABLED},
        },
    ),
)
async def renew_subscription(
    subscription_id: SubscriptionId,
    session: DbSession,
    request: Request,
    settings: AppSettings,
    language: AnswerLanguage,
) -> SubscriptionQueuedOut:
    row = await repository.get_by_id(session, subscription_id)
    if row is None:
        raise _not_found(subscription_id)
    connection = await repository.connection(session, row.connection_id)
    _check_enabled(settings, row.mailbox, language.of(connection.locale if connection else "en"))
    if row.state != subscriptions.ACTIVE or row.graph_subscription_id is None:
        raise ProblemError(
            409,
            "subscription_not_active",
            "The subscription is not active",
            f"subscription {subscription_id} is {row.state}: create it with POST "
            "/api/v1/connections/{organization_id}/employees/{employee_id}/subscription",
        )
    queued = await subscriptions.queue_renew(session, row)
    await session.commit()
    request.app.state.wake_worker()
    return SubscriptionQueuedOut(
        mailbox=row.mailbox, action="renew", queued=queued, subscription_id=row.id
    )


@router.delete(
    "/api/v1/subscriptions/{subscription_id}",
    summary="Delete a subscription",
    description=(
        "Removes the subscription: its record at once, in Graph in the background. Outlook "
        "changes of the mailbox are then only picked up by the periodic safety sync until the "
        "subscription is created again (POST …/employees/{employee_id}/subscription, or a PUT "
        "of the employee)."
    ),
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=_with_examples((404, 422), {404: {"subscription_not_found": _NOT_FOUND}}),
)
async def delete_subscription(
    subscription_id: SubscriptionId, session: DbSession, request: Request
) -> Response:
    row = await repository.get_by_id(session, subscription_id)
    if row is None:
        raise _not_found(subscription_id)
    queued = await subscriptions.remove(session, row)
    await session.commit()
    if queued:
        request.app.state.wake_worker()
    return Response(status_code=status.HTTP_204_NO_CONTENT)
