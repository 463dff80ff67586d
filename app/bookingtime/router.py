"""`POST /webhooks/bookingtime/{organization_id}`: HTTP in and out of the bookingtime intake.

The body is read raw (capped) and verified before it is parsed; everything stored for one
delivery is committed in one transaction. The request body is documented by hand
(`openapi_extra`), since the endpoint reads the raw bytes instead of declaring a body parameter.
"""

from __future__ import annotations

import functools
import logging
import re
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import IntegrityError

from app import counters, logs
from app.bookingtime.parsing import InvalidJson, InvalidPayload, parse_event
from app.bookingtime.schemas import (
    EXAMPLE_EVENT,
    MAX_LIST_ITEMS,
    MAX_STRING_CHARS,
    MAX_TEXT_CHARS,
    MAX_VALUES,
    AppointmentEvent,
    DuplicateResult,
    IntakeResult,
)
from app.bookingtime.service import BookingtimeIntake, Delivery
from app.bookingtime.signature import SignatureError, UndecodableBody, WebhookVerifier
from app.config import Settings
from app.crypto import SecretBox
from app.http.limits import read_body, refuse_declared_oversize
from app.http.problems import ProblemError, problem_responses
from app.inbox.repository import Receiver
from app.sync.translate import EARLIEST, LATEST

log = logging.getLogger(__name__)


router = APIRouter(tags=["webhooks"])

# Loose on purpose: bookingtime ids are `f6` + 30 characters, but any url-safe id up to the
# column's 64 characters is looked up, and anything else is simply not an organisation (404).
_ORGANIZATION_ID = re.compile(r"[A-Za-z0-9._~\-]{1,64}")


@functools.lru_cache(maxsize=1024)
def _verifier(secret_box: SecretBox, receiver: Receiver) -> WebhookVerifier:
    # Keyed by the stored ciphertexts (and the grace's end): a changed (or re-encrypted) secret
    # is a new Fernet token, so a delivery is never checked against a secret the connection no
    # longer has.
    return WebhookVerifier(
        secret_box.decrypt(receiver.webhook_secret_encrypted),
        # A replaced secret under a key that is gone: only the current one works.
        previous_secret=secret_box.decrypt_or_none(receiver.previous_webhook_secret_encrypted),
        previous_expires_at=receiver.previous_webhook_secret_expires_at,
    )


def _invalid_json(exc: ValueError) -> ProblemError:
    return ProblemError(400, "invalid_json", "The body is not JSON", detail=str(exc))


def _unknown_organization() -> ProblemError:
    return ProblemError(
        404,
        "unknown_organization",
        "Unknown organisation",
        detail="no connection is configured for this bookingtime organisation",
    )


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    """A JSON schema with its `$defs` inlined: `openapi_extra` cannot register components."""
    definitions = schema.pop("$defs", {})

    def resolve(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return resolve(definitions[ref.removeprefix("#/$defs/")])
            return {key: resolve(value) for key, value in node.items()}
        if isinstance(node, list):
            return [resolve(item) for item in node]
        return node

    resolved: dict[str, Any] = resolve(schema)
    return resolved


_DESCRIPTION = """
Receives one bookingtime appointment event, signed per
[Standard Webhooks](https://www.standardwebhooks.com) with the connection's `whsec_…` secret
(headers `webhook-id`, `webhook-timestamp`, `webhook-signature`; the timestamp must be within
±5 minutes of the server's clock by default).

In one transaction the delivery is recorded in the inbox (idempotent on `webhook-id`), the
appointment snapshot is stored unless a newer event was already stored, and a `sync.appointment`
job is enqueued (one pending job per appointment). Outlook is updated by the worker, never here.

* `202` `accepted`: stored and queued; `job_id` is null with `coalesced: true` when a job for the
  appointment was already pending (it will read this snapshot).
* `202` `stale`: recorded, but the stored snapshot is newer, so it is kept.
* `202` `ignored`: an event type calbridge does not handle, recorded only.
* `200` `duplicate`: this `webhook-id` was already received; nothing new is stored.

Limits (`docs/webhooks.md`), checked before anything is stored: at most {lists} entries in any
array (`bookingResourceList` included), {strings} characters in any string ({texts} in
`description` and `notes`), {values} JSON values in all; every date-time between {earliest} and
{latest} (UTC), and `end` not before `start`.

Errors are `application/problem+json` with a stable `code`: `invalid_json` (400),
`missing_signature`, `invalid_signature`, `stale_timestamp` (401), `unknown_organization` (404),
`payload_too_large` (413), `validation_failed` (422, naming each field in `errors`).
""".format(
    lists=MAX_LIST_ITEMS,
    strings=f"{MAX_STRING_CHARS:,}",
    texts=f"{MAX_TEXT_CHARS:,}",
    values=f"{MAX_VALUES:,}",
    earliest=f"{EARLIEST:%Y-%m-%d}",
    latest=f"{LATEST:%Y-%m-%d}",
)


@router.post(
    "/webhooks/bookingtime/{organization_id}",
    status_code=202,
    summary="Receive a bookingtime appointment event",
    description=_DESCRIPTION,
    response_model=IntakeResult,
    responses={
        200: {"model": DuplicateResult, "description": "already received: nothing stored"},
        **problem_responses(400, 401, 404, 413, 422),
    },
    openapi_extra={
        "parameters": [
            {"name": name, "in": "header", "required": True, "schema": {"type": "string"}}
            | {"example": example}
            for name, example in (
                ("webhook-id", "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W"),
                ("webhook-timestamp", "1748764800"),
                ("webhook-signature", "v1,K5oZfzN95Z9UVu1EsfQmfVNQhnkZ2pj9o9NDN/H/pI4="),
            )
        ],
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": _inline_refs(AppointmentEvent.model_json_schema()),
                    "example": EXAMPLE_EVENT,
                }
            },
        },
    },
)
async def receive(request: Request, organization_id: str) -> JSONResponse:
    started = time.perf_counter()
    try:
        status, response = await _receive(request, organization_id)
    except ProblemError as exc:
        counters.bookingtime_received(exc.code, started)
        raise
    except Exception:
        counters.bookingtime_received("error", started)
        raise
    counters.bookingtime_received(status, started)
    return response


async def _receive(request: Request, organization_id: str) -> tuple[str, JSONResponse]:
    """The delivery's outcome (`accepted`, `stale`, `ignored`, `duplicate`) and response."""
    settings: Settings = request.app.state.settings
    limit = settings.max_webhook_bytes
    refuse_declared_oversize(request, limit, "webhook")
    if not _ORGANIZATION_ID.fullmatch(organization_id):
        raise _unknown_organization()
    # Read before touching the database: with SQLite the one connection is then never held
    # while waiting on the network.
    body = await read_body(request, limit, "webhook")

    intake: BookingtimeIntake = request.app.state.bookingtime_intake
    receiver = await intake.receivers.get(organization_id)
    if receiver is None:
        raise _unknown_organization()
    logs.bind(organization_id=organization_id)
    secret_box: SecretBox = request.app.state.secret_box
    tolerance = settings.webhook_tolerance_seconds
    try:
        try:
            delivery = _verifier(secret_box, receiver).verify(
                body, request.headers, tolerance_seconds=tolerance
            )
        except SignatureError as exc:
            # The remembered secret may have just been replaced: check against the stored one.
            if exc.code != "invalid_signature":
                raise
            current = await intake.receivers.get(organization_id, fresh=True)
            if current is None:
                raise _unknown_organization() from exc
            if current == receiver:
                raise
            receiver = current
            delivery = _verifier(secret_box, receiver).verify(
                body, request.headers, tolerance_seconds=tolerance
            )
    except SignatureError as exc:
        log.info("bookingtime webhook for %s refused: %s", organization_id, exc.code)
        raise ProblemError(
            401, exc.code, "The webhook signature is not valid", detail=str(exc)
        ) from exc
    except UndecodableBody as exc:
        raise _invalid_json(exc) from exc

    try:
        event = parse_event(delivery.text, organization_id=organization_id)
    except InvalidJson as exc:
        raise _invalid_json(exc) from exc
    except InvalidPayload as exc:
        raise ProblemError(
            422,
            "validation_failed",
            "The webhook payload is not valid",
            detail=str(exc),
            errors=exc.errors,
        ) from exc

    try:
        outcome = await intake.record(
            Delivery(
                connection_id=receiver.connection_id,
                webhook_id=delivery.webhook_id,
                event=event,
            )
        )
    except IntegrityError as exc:
        # The connection was deleted after it was looked up.
        intake.receivers.forget(organization_id)
        raise _unknown_organization() from exc
    if outcome.status == "duplicate":
        return "duplicate", JSONResponse({"status": "duplicate"}, status_code=200)
    if outcome.job_id is not None:
        request.app.state.wake_worker()
    return outcome.status, JSONResponse(
        {
            "status": outcome.status,
            "inbox_event_id": outcome.inbox_event_id,
            "job_id": outcome.job_id,
            "coalesced": outcome.coalesced,
        },
        status_code=202,
    )
