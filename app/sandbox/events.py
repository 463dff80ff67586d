"""Graph's event routes for a user's primary calendar: create, list (with the extended-property
`$filter`), get (with `$select` and `$expand`), PATCH with If-Match, DELETE."""

from __future__ import annotations

import json
import re
from typing import Any
from urllib.parse import urlencode

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.sandbox import errors
from app.sandbox.errors import GraphError
from app.sandbox.event_body import parse_changes
from app.sandbox.event_options import ODATA_STRING, render_options, unquote_odata
from app.sandbox.event_render import RenderOptions, render_event
from app.sandbox.event_writes import apply_changes, new_event
from app.sandbox.pipeline import MailboxCall, graph_base, graph_response, mailbox_request
from app.sandbox.state import Event

router = APIRouter()

DEFAULT_PAGE_SIZE = 10  # Graph's page size for /events without $top
_FILTER = re.compile(
    rf"^singleValueExtendedProperties/any\(\s*(\w+)\s*:\s*\1/id eq {ODATA_STRING}\s+and\s+"
    rf"\1/value eq {ODATA_STRING}\s*\)$",
    re.IGNORECASE,
)


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    content_type = request.headers.get("content-type", "")
    if "application/json" not in content_type.casefold():
        raise errors.bad_json()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.bad_json() from exc
    if not isinstance(body, dict):
        raise errors.bad_json()
    return body


def _entity(
    call: MailboxCall, request: Request, event: Event, options: RenderOptions
) -> dict[str, Any]:
    rendered = render_event(event, call.user, options)
    context = f"{graph_base(request)}/$metadata#users('{call.user.id}')/events"
    if options.select is not None:
        context += "(" + ",".join(options.select) + ")"
    return {"@odata.context": context + "/$entity", **rendered}


def _extended_matches(event: Event, prop_id: str, value: str) -> bool:
    # The id is case-sensitive, the value is not (graph-protocol.md §2).
    stored = event.extended.get(prop_id)
    return stored is not None and stored.casefold() == value.casefold()


def _find(call: MailboxCall, event_id: str) -> Event:
    event = call.mailbox.find(event_id)
    if event is None:
        raise errors.item_not_found()
    return event


@router.post("/v1.0/users/{user_ref}/events", status_code=201)
@router.post("/v1.0/users/{user_ref}/calendar/events", status_code=201)
async def create_event(request: Request, user_ref: str) -> JSONResponse:
    await request.body()  # read before admission: a hang fault waits for the client to leave
    async with mailbox_request(request, user_ref) as call:
        body = await _json_body(request)
        options, headers = render_options(request, allow_query=False)
        changes = parse_changes(body)
        state = request.app.state.runtime.state
        with state.lock:
            existing = None
            if changes.transaction_id is not None:
                existing = next(
                    (
                        e
                        for e in call.mailbox.events.values()
                        if e.transaction_id == changes.transaction_id
                    ),
                    None,
                )
            if existing is not None:
                # Undocumented in Graph: a retried POST gets the event it already created.
                event = existing
            else:
                event = new_event(changes, state.clock.now())
                call.mailbox.events[event.immutable_id] = event
                state.record_change("created", call.user.id, event.immutable_id)
            entity = _entity(call, request, event, options)
        return graph_response(entity, status=201, headers=headers)


@router.get("/v1.0/users/{user_ref}/events")
@router.get("/v1.0/users/{user_ref}/calendar/events")
async def list_events(request: Request, user_ref: str) -> JSONResponse:
    async with mailbox_request(request, user_ref) as call:
        options, headers = render_options(request)
        query = request.query_params
        top = _int_param(query.get("$top"), DEFAULT_PAGE_SIZE, "$top")
        skip = _int_param(query.get("$skip"), 0, "$skip")
        raw_filter = query.get("$filter")
        state = request.app.state.runtime.state
        with state.lock:
            events = list(call.mailbox.events.values())
            if raw_filter is not None:
                match = _FILTER.match(raw_filter.strip())
                if match is None:
                    raise GraphError(
                        400,
                        "ErrorInvalidUrlQueryFilter",
                        "The query filter contains one or more invalid nodes.",
                    )
                prop_id, value = unquote_odata(match.group(2)), unquote_odata(match.group(3))
                events = [e for e in events if _extended_matches(e, prop_id, value)]
            page = [render_event(e, call.user, options) for e in events[skip : skip + top]]
        body: dict[str, Any] = {
            "@odata.context": f"{graph_base(request)}/$metadata#users('{call.user.id}')/events",
            "value": page,
        }
        if skip + top < len(events):
            next_query = dict(query)
            next_query["$skip"] = str(skip + top)
            body["@odata.nextLink"] = f"{graph_base(request)}/users/{user_ref}/events?" + urlencode(
                next_query
            )
        return graph_response(body, headers=headers)


def _int_param(raw: str | None, default: int, name: str) -> int:
    if raw is None:
        return default
    if not raw.isdigit():
        raise GraphError(400, "BadRequest", f"Invalid value '{raw}' for {name} query option.")
    return int(raw)


@router.get("/v1.0/users/{user_ref}/events/{event_id}")
@router.get("/v1.0/users/{user_ref}/calendar/events/{event_id}")
async def get_event(request: Request, user_ref: str, event_id: str) -> JSONResponse:
    async with mailbox_request(request, user_ref) as call:
        options, headers = render_options(request)
        with request.app.state.runtime.state.lock:
            entity = _entity(call, request, _find(call, event_id), options)
        return graph_response(entity, headers=headers)


def _check_if_match(request: Request, event: Event) -> None:
    expected = request.headers.get("if-match")
    if expected is None or expected.strip() == "*":
        return
    tag = expected.strip()
    tag = tag[2:] if tag.startswith("W/") else tag
    if tag.strip('"') != event.change_key:
        raise GraphError(
            412,
            "ErrorIrresolvableConflict",
            "The send or update operation could not be performed because the change key passed in"
            " the request does not match the current change key for the item.",
        )


@router.patch("/v1.0/users/{user_ref}/events/{event_id}")
@router.patch("/v1.0/users/{user_ref}/calendar/events/{event_id}")
async def update_event(request: Request, user_ref: str, event_id: str) -> JSONResponse:
    await request.body()
    async with mailbox_request(request, user_ref) as call:
        state = request.app.state.runtime.state
        with state.lock:
            event = _find(call, event_id)
        body = await _json_body(request)
        options, headers = render_options(request, allow_query=False)
        changes = parse_changes(body)
        changes.transaction_id = None  # can't be changed once set (graph-protocol.md §2)
        with state.lock:
            _check_if_match(request, event)
            apply_changes(event, changes, state.clock.now())
            state.record_change("updated", call.user.id, event.immutable_id)
            entity = _entity(call, request, event, options)
        return graph_response(entity, headers=headers)


@router.delete("/v1.0/users/{user_ref}/events/{event_id}", status_code=204)
@router.delete("/v1.0/users/{user_ref}/calendar/events/{event_id}", status_code=204)
async def delete_event(request: Request, user_ref: str, event_id: str) -> Response:
    async with mailbox_request(request, user_ref) as call:
        state = request.app.state.runtime.state
        with state.lock:
            event = _find(call, event_id)
            _check_if_match(request, event)
            del call.mailbox.events[event.immutable_id]
            state.record_change("deleted", call.user.id, event.immutable_id)
        return Response(status_code=204)
