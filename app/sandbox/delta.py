"""calendarView (single events and expanded series occurrences in a window) and calendarView/delta
(paged rounds, delta tokens over the mailbox's change log, `@removed`, 410 for lost tokens)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.sandbox import recurrence
from app.sandbox.delta_store import (
    Answer,
    DeltaStore,
    Entry,
    ItemRef,
    Snapshot,
    decode_token,
    skip_token,
)
from app.sandbox.errors import GraphError
from app.sandbox.event_options import preferences, render_options
from app.sandbox.event_render import RenderOptions, render_event, render_occurrence
from app.sandbox.pipeline import MailboxCall, graph_base, graph_response, mailbox_request
from app.sandbox.state import Event, Mailbox, SandboxState

router = APIRouter()

DEFAULT_PAGE_SIZE = 10  # calendarView's default; the delta docs name none, so the same is used
MAX_PAGE_SIZE = 1000
# event-delta docs: none of these may be used with delta on a calendarView.
UNSUPPORTED_DELTA_OPTIONS = ("$select", "$expand", "$filter", "$orderby", "$search")
EVENT_ODATA_TYPE = "#microsoft.graph.event"
SYNC_STATE_NOT_FOUND = (
    "The sync state generation is not found. The delta token is expired and data must be"
    " synchronized again."
)

Item = Event | recurrence.Occurrence
Window = tuple[datetime, datetime]


def _query(request: Request) -> dict[str, str]:
    # Graph's own example spells them startdatetime/enddatetime: names are case-insensitive.
    return {name.casefold(): value for name, value in request.query_params.multi_items()}


def _instant(raw: str, name: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(raw.strip().replace(" ", "+"))
    except ValueError as exc:
        raise GraphError(
            400, "ErrorInvalidParameter", f"The value '{raw}' of parameter '{name}' is invalid."
        ) from exc
    # No offset given: Graph reads the value as UTC.
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _window(query: dict[str, str]) -> Window:
    start, end = query.get("startdatetime"), query.get("enddatetime")
    if not start or not end:
        raise GraphError(
            400,
            "ErrorInvalidParameter",
            "This request requires a time window specified by the query string parameters"
            " StartDateTime and EndDateTime.",
        )
    return _instant(start, "StartDateTime"), _instant(end, "EndDateTime")


def _page_size(request: Request, query: dict[str, str] | None = None) -> tuple[int, str | None]:
    """From $top (calendarView only) or Prefer: odata.maxpagesize; plus what was applied."""
    top = (query or {}).get("$top")
    if top is not None:
        if not top.isdigit():
            raise GraphError(400, "BadRequest", f"Invalid value '{top}' for $top query option.")
        return max(1, min(int(top), MAX_PAGE_SIZE)), None
    raw = preferences(request).get("odata.maxpagesize")
    if raw is not None and raw.isdigit() and int(raw) > 0:
        size = min(int(raw), MAX_PAGE_SIZE)
        return size, f"odata.maxpagesize={size}"
    return DEFAULT_PAGE_SIZE, None


def _with_applied(headers: dict[str, str], applied: str | None) -> dict[str, str]:
    if applied is None:
        return headers
    existing = headers.get("Preference-Applied")
    return {**headers, "Preference-Applied": f"{existing}, {applied}" if existing else applied}


def window_items(mailbox: Mailbox, window: Window) -> list[Item]:
    """Single events overlapping the window and the occurrences of series masters (never the
    masters themselves), by start time."""
    found: list[Item] = []
    for event in mailbox.events.values():
        if event.start is None or event.end is None:
            continue
        if event.fields.get("recurrence"):
            found.extend(recurrence.occurrences(event, *window))
        elif recurrence.overlaps(event.start[0], event.end[0], *window):
            found.append(event)
    found.sort(key=lambda item: (_start_of(item), _ref(item).key))
    return found


def _start_of(item: Item) -> datetime:
    if isinstance(item, recurrence.Occurrence):
        return item.start
    assert item.start is not None
    return item.start[0]


def _ref(item: Item) -> ItemRef:
    if isinstance(item, recurrence.Occurrence):
        master, day = item.master, item.original_date
        return ItemRef(
            key=f"{master.immutable_id}|{day.isoformat()}",
            event_id=master.immutable_id,
            rest_id=recurrence.occurrence_id(master.rest_id, day),
            immutable_id=recurrence.occurrence_id(master.immutable_id, day),
            etag=master.change_key,
            original_date=day,
        )
    return ItemRef(
        item.immutable_id, item.immutable_id, item.rest_id, item.immutable_id, item.change_key
    )


def _render(item: Item, call: MailboxCall, options: RenderOptions) -> dict[str, Any]:
    if isinstance(item, recurrence.Occurrence):
        return render_occurrence(item, call.user, options)
    return render_event(item, call.user, options)


def _path(request: Request, user_ref: str) -> str:
    # Links name the user as the request did; the route below /calendar is the same calendar.
    return f"{graph_base(request)}/users/{quote(user_ref, safe='@')}/calendarView"


@router.get("/v1.0/users/{user_ref}/calendarView")
@router.get("/v1.0/users/{user_ref}/calendar/calendarView")
async def calendar_view(request: Request, user_ref: str) -> JSONResponse:
    async with mailbox_request(request, user_ref) as call:
        query = _query(request)
        for name in ("$filter", "$orderby", "$search"):
            if name in query:
                raise GraphError(
                    400, "BadRequest", f"The query option '{name}' is not supported by the sandbox."
                )
        window = _window(query)
        options, headers = render_options(request)
        size, applied = _page_size(request, query)
        skip_raw = query.get("$skip", "0")
        if not skip_raw.isdigit():
            raise GraphError(
                400, "BadRequest", f"Invalid value '{skip_raw}' for $skip query option."
            )
        skip = int(skip_raw)
        with request.app.state.runtime.state.lock:
            items = window_items(call.mailbox, window)
            page = [_render(item, call, options) for item in items[skip : skip + size]]
        context = f"{graph_base(request)}/$metadata#users('{call.user.id}')/calendarView"
        if options.select is not None:
            context += "(" + ",".join(options.select) + ")"
        body: dict[str, Any] = {"@odata.context": context, "value": page}
        if skip + size < len(items):
            next_query = dict(request.query_params)
            next_query.pop("$top", None)
            next_query["$top"] = str(size)
            next_query["$skip"] = str(skip + size)
            body["@odata.nextLink"] = (
                f"{_path(request, user_ref)}?{urlencode(next_query, safe='$:')}"
            )
        return graph_response(body, headers=_with_applied(headers, applied))


def _gone(request: Request, user_ref: str, window: Window | None) -> GraphError:
    """410 with a Location that restarts the sync: an empty $deltatoken, and the window when the
    token still tells it."""
    params = ""
    if window is not None:
        start, end = (w.strftime("%Y-%m-%dT%H:%M:%SZ") for w in window)
        params = f"startDateTime={start}&endDateTime={end}&"
    location = f"{_path(request, user_ref)}/delta?{params}$deltatoken="
    return GraphError(
        410, "syncStateNotFound", SYNC_STATE_NOT_FOUND, headers={"Location": location}
    )


def _initial_entries(items: list[ItemRef]) -> tuple[Entry, ...]:
    return tuple(Entry("item", ref) for ref in items)


def _delta_entries(
    state: SandboxState, mailbox: Mailbox, previous: Snapshot, current: dict[str, ItemRef]
) -> tuple[Entry, ...]:
    """Items new or changed since the snapshot, items that left the window, and (as Graph does)
    `@removed` for events changed since then that are nowhere in the window."""
    entries = [
        Entry("item", ref)
        for key, ref in current.items()
        if key not in previous.items or previous.items[key].etag != ref.etag
    ]
    entries += [Entry("removed", ref) for key, ref in previous.items.items() if key not in current]
    covered = {ref.event_id for ref in current.values()}
    covered |= {ref.event_id for ref in previous.items.values()}
    reported: set[str] = set()
    for change in state.changes[previous.sequence :]:
        event_id = change.event_id
        if change.user_id != mailbox.user_id or event_id in covered or event_id in reported:
            continue
        reported.add(event_id)
        event = mailbox.events.get(event_id)
        # A deleted event's REST id is not in the change log; its immutable id stands in.
        rest_id = event.rest_id if event is not None else event_id
        etag = event.change_key if event is not None else ""
        entries.append(Entry("removed", ItemRef(event_id, event_id, rest_id, event_id, etag)))
    return tuple(entries)


def _start_round(
    request: Request, call: MailboxCall, window: Window, previous: Snapshot | None, source: str
) -> tuple[str, Answer]:
    """Fix a round's answer (or reuse the one already fixed for the same token and state)."""
    runtime = request.app.state.runtime
    store: DeltaStore = runtime.delta
    state: SandboxState = runtime.state
    with state.lock:
        sequence = len(state.changes)
        memo = (source, sequence)
        found = store.memoized(call.user.id, memo)
        if found is not None:
            return found
        current = {ref.key: ref for ref in map(_ref, window_items(call.mailbox, window))}
        if previous is None:
            entries = _initial_entries(list(current.values()))
        else:
            entries = _delta_entries(state, call.mailbox, previous, current)
        token = store.add_snapshot(Snapshot(call.user.id, window, sequence, current))
        answer = Answer(call.user.id, window, entries, token)
        return store.add_answer(answer, memo), answer


def _resolve_entry(
    entry: Entry, live: dict[str, Item], call: MailboxCall, options: RenderOptions
) -> dict[str, Any]:
    item = live.get(entry.ref.key) if entry.kind == "item" else None
    if item is None:
        # Gone from the window since the round started: the next round reports it again.
        return {
            "@odata.type": EVENT_ODATA_TYPE,
            "id": entry.ref.rendered_id(options.immutable_ids),
            "@removed": {"reason": "deleted"},
        }
    return {"@odata.type": EVENT_ODATA_TYPE, **_render(item, call, options)}


# Graph takes the function with or without its parentheses; msgraph-sdk sends `delta()`.
@router.get("/v1.0/users/{user_ref}/calendarView/delta")
@router.get("/v1.0/users/{user_ref}/calendarView/delta()")
@router.get("/v1.0/users/{user_ref}/calendar/calendarView/delta")
@router.get("/v1.0/users/{user_ref}/calendar/calendarView/delta()")
async def calendar_view_delta(request: Request, user_ref: str) -> JSONResponse:
    async with mailbox_request(request, user_ref) as call:
        query = _query(request)
        bad = [name for name in UNSUPPORTED_DELTA_OPTIONS if name in query]
        if bad:
            raise GraphError(
                400,
                "ErrorInvalidUrlQuery",
                "The following parameters are not supported with change tracking over the"
                f" 'CalendarView' resource: '{', '.join(bad)}'.",
            )
        options, headers = render_options(request, allow_query=False)
        size, applied = _page_size(request)
        store: DeltaStore = request.app.state.runtime.delta
        offset = 0
        if "$skiptoken" in query:
            info = decode_token("skip", query["$skiptoken"])
            found = store.answer(call.user.id, info.handle) if info else None
            if info is None or found is None:
                raise _gone(request, user_ref, info.window if info else None)
            handle, answer, offset = info.handle, found, info.offset
        elif "$deltatoken" in query:
            info = decode_token("delta", query["$deltatoken"])
            previous = store.snapshot(call.user.id, info.handle) if info else None
            if info is None or previous is None:
                raise _gone(request, user_ref, info.window if info else None)
            handle, answer = _start_round(request, call, previous.window, previous, info.handle)
        else:
            window = _window(query)
            source = f"initial|{call.user.id}|{window[0].isoformat()}|{window[1].isoformat()}"
            handle, answer = _start_round(request, call, window, None, source)
        state: SandboxState = request.app.state.runtime.state
        with state.lock:
            live = {_ref(item).key: item for item in window_items(call.mailbox, answer.window)}
            page = [
                _resolve_entry(entry, live, call, options)
                for entry in answer.entries[offset : offset + size]
            ]
        body: dict[str, Any] = {
            "@odata.context": f"{graph_base(request)}/$metadata#Collection(event)",
            "value": page,
        }
        link = f"{_path(request, user_ref)}/delta?"
        if offset + size < len(answer.entries):
            token = skip_token(handle, answer, offset + size)
            body["@odata.nextLink"] = f"{link}$skiptoken={token}"
        else:
            body["@odata.deltaLink"] = f"{link}$deltatoken={answer.delta_token}"
        return graph_response(body, headers=_with_applied(headers, applied))
