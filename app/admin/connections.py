"""Admin endpoints for connections: `/api/v1/connections[/{organization_id}]`."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Depends, Response, status

from app.admin.dependencies import (
    AnswerLanguage,
    AppSettings,
    DbSession,
    OrganizationId,
    get_authority_hosts,
    get_bookingtime_http,
    get_graph,
    get_secret_box,
    get_webhook_secret_grace,
)
from app.connections import bookingtime_checks, checks, service
from app.connections.schemas import (
    CheckOut,
    ConnectionIn,
    ConnectionOut,
    ConnectionPutOut,
    VerifyIn,
    VerifyOut,
)
from app.credentials import secrets
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.http.problems import problem_responses

router = APIRouter(prefix="/api/v1/connections", tags=["connections"])


_PUT_EXAMPLES: dict[str, Any] = {
    "create": {
        "summary": "Create, calbridge generates the webhook secret",
        "value": {
            "tenant": "contoso.onmicrosoft.com",
            "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
            "client_secret": "Xy48Q~abcdefghijklmnopqrstuvwxyz0123456",
            "client_secret_expires_at": "2027-05-31",
            "locale": "de",
        },
    },
    "authority_url": {
        "summary": "Tenant pasted as the authority URL, own webhook secret",
        "value": {
            "tenant": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
            "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
            "client_secret": "Xy48Q~abcdefghijklmnopqrstuvwxyz0123456",
            "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "locale": "en",
        },
    },
    "rotate_secret": {
        "summary": "Update: a new client secret and its expiry, other secrets kept",
        "value": {
            "tenant": "contoso.onmicrosoft.com",
            "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
            "client_secret": "Nw91Q~zyxwvutsrqponmlkjihgfedcba9876543",
            "client_secret_expires_at": "2027-11-30T00:00:00Z",
        },
    },
    "event_settings": {
        "summary": "Update: how appointments look in Outlook (secrets kept)",
        "value": {
            "tenant": "contoso.onmicrosoft.com",
            "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
            "event_settings": {
                "subject_template": "{service}: {customer}",
                "include_customer_contact": False,
                "reminder_minutes": 30,
                "category": "Termine",
                "on_cancel": "mark",
            },
        },
    },
}


@router.get(
    "",
    summary="List connections",
    description="Every connection, ordered by organisation id. Secrets are never returned.",
    responses=problem_responses(422),
)
async def list_connections(session: DbSession, language: AnswerLanguage) -> list[ConnectionOut]:
    summaries = await service.list_connections(session)
    await session.commit()
    return [
        ConnectionOut.build(s.connection, employee_count=s.employee_count, locale=language.asked)
        for s in summaries
    ]


@router.put(
    "/{organization_id}",
    summary="Create or update a connection",
    description=(
        "Links a bookingtime organisation to the Entra app registration that may write its "
        "employees' calendars (application permission `Calendars.ReadWrite`, admin consent). "
        "Answers `201` when the connection is new, `200` when it was updated. Secrets are "
        "stored encrypted and never returned, except a webhook secret calbridge generates: "
        "that one is in this response only.\n\n"
        "A new `client_secret` for an existing connection is first tried against Microsoft "
        "Entra (a token is acquired with it) and stored only if that works, so the rotation "
        "never interrupts sync. If Entra refuses it: `422` `client_secret_rejected` with "
        "`reason` (e.g. `secret_invalid`, `secret_expired`), `aadsts_code` and a readable "
        "`detail` (in the language `Accept-Language` prefers, else the connection's), and the "
        "old secret stays. If Entra cannot be reached: `503` `entra_unavailable` with "
        "`Retry-After`, and nothing is changed. Creating a "
        "connection is not checked this way (see the verify endpoint).\n\n"
        "A new `webhook_secret` takes effect at once; deliveries signed with the secret it "
        "replaces are still accepted until `previous_webhook_secret_expires_at` "
        "(`CALBRIDGE_WEBHOOK_SECRET_GRACE_SECONDS`, default one day), so bookingtime can be "
        "switched over without losing any. A second rotation within that period keeps only the "
        "secret it replaces."
    ),
    status_code=status.HTTP_200_OK,
    responses={
        200: {"description": "Updated"},
        201: {"model": ConnectionPutOut, "description": "Created"},
        **problem_responses(409, 422, 503),
    },
)
async def put_connection(
    organization_id: OrganizationId,
    body: Annotated[ConnectionIn, Body(openapi_examples=_PUT_EXAMPLES)],
    response: Response,
    session: DbSession,
    secret_box: Annotated[SecretBox, Depends(get_secret_box)],
    authority_hosts: Annotated[tuple[str, ...], Depends(get_authority_hosts)],
    graph: Annotated[GraphClients, Depends(get_graph)],
    webhook_secret_grace: Annotated[timedelta, Depends(get_webhook_secret_grace)],
    language: AnswerLanguage,
) -> ConnectionPutOut:
    rotation = await service.rotated_client_secret(
        session,
        secret_box=secret_box,
        organization_id=organization_id,
        data=body,
        authority_hosts=authority_hosts,
    )
    if rotation is not None:
        locale = language.of(body.locale or rotation.connection.locale)
        # No transaction stays open while Entra is asked; the PUT below reads afresh.
        await session.commit()
        await secrets.verify_new_secret(
            graph,
            tenant=rotation.tenant,
            client_id=rotation.client_id,
            client_secret=rotation.client_secret,
            locale=locale,
        )
    result = await service.put_connection(
        session,
        secret_box=secret_box,
        organization_id=organization_id,
        data=body,
        authority_hosts=authority_hosts,
        webhook_secret_grace=webhook_secret_grace,
    )
    await session.commit()
    if result.created:
        response.status_code = status.HTTP_201_CREATED
    connection = result.summary.connection
    out = ConnectionPutOut.build(
        connection,
        employee_count=result.summary.employee_count,
        locale=language.of(connection.locale),
    )
    out.webhook_secret = result.generated_webhook_secret
    return out


@router.get(
    "/{organization_id}",
    summary="Get a connection",
    responses=problem_responses(404, 422),
)
async def get_connection(
    organization_id: OrganizationId, session: DbSession, language: AnswerLanguage
) -> ConnectionOut:
    summary = await service.get_connection_summary(session, organization_id=organization_id)
    await session.commit()
    return ConnectionOut.build(
        summary.connection,
        employee_count=summary.employee_count,
        locale=language.of(summary.connection.locale),
    )


@router.delete(
    "/{organization_id}",
    summary="Delete a connection",
    description=(
        "Deletes the connection with its employees, stored appointments, webhook inbox and sync "
        "history. Works whatever state the credentials are in. Its Graph change-notification "
        "subscriptions are deleted at Microsoft in the background (jobs queued with the "
        "credentials they need); if that fails they simply expire."
    ),
    status_code=status.HTTP_204_NO_CONTENT,
    response_class=Response,
    responses=problem_responses(404, 422),
)
async def delete_connection(organization_id: OrganizationId, session: DbSession) -> None:
    await service.delete_connection(session, organization_id=organization_id)
    await session.commit()


@router.post(
    "/{organization_id}/verify",
    summary="Verify a connection against Microsoft and bookingtime",
    description=(
        "Runs the checks in order: `token` (the app signs in with the stored credentials), then, "
        "when a mailbox is given, `mailbox` (the app reads that mailbox's calendar). Each check "
        "comes with a stable `code` and a readable `message` in the connection's language (or "
        "`Accept-Language` de/en). A check after a failed one is listed as `skipped`. Microsoft "
        "Graph unreachable is a failed check with code `graph_unavailable`.\n\n"
        "With `bookingtime_api` set, a `bookingtime` check follows: the bookingtime app gets a "
        "token for this organisation. Its outcome is stored as the connection's "
        "`bookingtime_api.state`: `ok`; `rejected` (`bookingtime_credentials_refused`, "
        "`bookingtime_not_permitted`, `bookingtime_error`); `unreachable` "
        "(`bookingtime_unavailable`)."
    ),
    responses=problem_responses(404, 422),
)
async def verify_connection(
    organization_id: OrganizationId,
    session: DbSession,
    secret_box: Annotated[SecretBox, Depends(get_secret_box)],
    graph: Annotated[GraphClients, Depends(get_graph)],
    bookingtime_http: Annotated[httpx.AsyncClient, Depends(get_bookingtime_http)],
    settings: AppSettings,
    language: AnswerLanguage,
    body: Annotated[VerifyIn | None, Body()] = None,
) -> VerifyOut:
    connection = await service.get_connection(session, organization_id=organization_id)
    await session.commit()
    locale = language.of(connection.locale)
    results = await checks.verify_connection(
        connection,
        graph=graph,
        secret_box=secret_box,
        locale=locale,
        mailbox=body.mailbox if body is not None else None,
    )
    bookingtime = await bookingtime_checks.check_bookingtime(
        connection,
        http=bookingtime_http,
        settings=settings.bookingtime,
        secret_box=secret_box,
        locale=locale,
    )
    await secrets.record_token_check(
        session, connection=connection, code=results[0].code, ok=results[0].ok
    )
    if bookingtime is not None:
        await bookingtime_checks.record_bookingtime_check(
            session, connection=connection, check=bookingtime
        )
        results.append(checks.as_verdict(bookingtime.result))
    await session.commit()
    return VerifyOut(
        ok=all(r.ok for r in results),
        checks=[CheckOut(name=r.name, ok=r.ok, code=r.code, message=r.message) for r in results],
    )
