"""`POST /webhooks/graph/notifications` and `POST /webhooks/graph/lifecycle`: Graph's validation
handshake, answered as `text/plain`, and notification batches, handed to the process's
`NotificationIntake` and always answered `202`."""

from __future__ import annotations

import json
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from app import counters
from app.config import Settings
from app.http.limits import read_body
from app.http.problems import ProblemError, problem_responses
from app.notifications.intake import NotificationIntake
from app.notifications.service import LIFECYCLE_PATH, NOTIFICATION_PATH

# Graph's tokens are about 150 characters; anything far longer is not Graph.
MAX_VALIDATION_TOKEN = 1024


def _items(body: bytes) -> list[Any]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ProblemError(400, "invalid_json", "The body is not JSON", detail=str(exc)) from exc
    value = document.get("value") if isinstance(document, dict) else None
    if not isinstance(value, list):
        raise ProblemError(
            400,
            "invalid_notification",
            "The body is not a notification collection",
            detail='expected {"value": [ ... ]}',
        )
    return value


def _handshake(token: str) -> Response:
    if not token or len(token) > MAX_VALIDATION_TOKEN:
        raise ProblemError(
            400,
            "invalid_validation_token",
            "The validation token is not valid",
            detail=f"a validation token has 1 to {MAX_VALIDATION_TOKEN} characters",
        )
    # text/plain and nosniff: a token carrying markup is echoed, never rendered as HTML.
    return PlainTextResponse(
        token,
        media_type="text/plain; charset=utf-8",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )


async def _receive(request: Request, source: str) -> Response:
    try:
        token = request.query_params.get("validationToken")
        if token is not None:
            response = _handshake(token)
            counters.webhook_received(source, "validation")
            return response
        settings: Settings = request.app.state.settings
        body = await read_body(request, settings.max_webhook_bytes, "notification")
        items = _items(body)
    except ProblemError as exc:
        counters.webhook_received(source, exc.code)
        raise
    intake: NotificationIntake = request.app.state.graph_notifications
    if await intake.receive(items, source=source):
        request.app.state.wake_worker()
    return Response(status_code=202)


router = APIRouter(tags=["webhooks"])

_EXAMPLE_CHANGE = {
    "value": [
        {
            "id": "lsgTZMr9KwAAA",
            "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
            "subscriptionExpirationDateTime": "2026-12-03T10:00:00Z",
            "clientState": "<the subscription's secret clientState>",
            "changeType": "updated",
            "resource": "Users/8ee44408-0679-472c-bc2a-692812af3437/Events/AAMkAGI2TG93AAA=",
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Event",
                "@odata.id": "Users/8ee44408-0679-472c-bc2a-692812af3437/Events/AAMkAGI2TG93AAA=",
                "id": "AAMkAGI2TG93AAA=",
            },
        }
    ]
}
_EXAMPLE_LIFECYCLE = {
    "value": [
        {
            "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
            "subscriptionExpirationDateTime": "2026-12-03T10:00:00Z",
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "clientState": "<the subscription's secret clientState>",
            "lifecycleEvent": "reauthorizationRequired",
        }
    ]
}


def _openapi(example: dict[str, Any]) -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": "validationToken",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "minLength": 1, "maxLength": MAX_VALIDATION_TOKEN},
                "description": "Graph's validation handshake: echoed as `text/plain`. An empty "
                "or longer token is `400 invalid_validation_token`.",
            }
        ],
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    # Items are not described: each is checked, and a malformed one is dropped.
                    "schema": {
                        "type": "object",
                        "required": ["value"],
                        "properties": {"value": {"type": "array"}},
                    },
                    "example": example,
                }
            },
        },
    }


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "validation handshake: the decoded token",
        "content": {"text/plain": {"example": "Validation: Testing client application"}},
    },
    202: {"description": "accepted (valid items queued, invalid ones dropped)"},
    **problem_responses(400, 413),
}

_CHECKS = (
    "Every item is checked: a known subscription, its `clientState` (constant-time), and (for "
    "changes) a `resource` inside that subscription's mailbox; items that fail are dropped and "
    "counted, never reported back. The answer is `202` with no body whatever the batch held. "
    "Errors: `invalid_json`, `invalid_notification`, `invalid_validation_token` (400), "
    "`payload_too_large` (413)."
)


@router.post(
    NOTIFICATION_PATH,
    status_code=202,
    response_class=Response,  # 202 has no body (the handshake's 200 is text/plain)
    summary="Receive Microsoft Graph change notifications",
    description=(
        "With `?validationToken=` (Graph's handshake when a subscription is created) the "
        "decoded token is answered as `text/plain`. Otherwise each valid change queues one "
        "delta run (`sync.mailbox`) of its mailbox; a burst for one mailbox queues one. " + _CHECKS
    ),
    responses=_RESPONSES,
    openapi_extra=_openapi(_EXAMPLE_CHANGE),
)
async def receive_notifications(request: Request) -> Response:
    return await _receive(request, "graph_notifications")


@router.post(
    LIFECYCLE_PATH,
    status_code=202,
    response_class=Response,  # 202 has no body (the handshake's 200 is text/plain)
    summary="Receive Microsoft Graph lifecycle notifications",
    description=(
        "The validation handshake as on the notification URL. `reauthorizationRequired` "
        "queues a reauthorization, `subscriptionRemoved` a new subscription followed by a full "
        "resync, `missed` a full resync. " + _CHECKS
    ),
    responses=_RESPONSES,
    openapi_extra=_openapi(_EXAMPLE_LIFECYCLE),
)
async def receive_lifecycle(request: Request) -> Response:
    return await _receive(request, "graph_lifecycle")
