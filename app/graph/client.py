"""GraphClient: every Microsoft Graph call calbridge makes (users, events, calendarView delta,
subscriptions, `$batch`), each sent and classified by GraphSender (app.graph.sender).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import httpx

from app import counters
from app.graph.errors import (
    GraphError,
    Target,
    Transient,
    UnexpectedGraphError,
    error_from_parts,
)
from app.graph.odata import (
    TAG_EXPAND,
    TAG_PROPERTY_ID,
    graph_time,
    if_match_value,
    prefer_timezone,
    subscription_time,
    tag_filter,
)
from app.graph.schemas import (
    BatchItemResult,
    BatchRequest,
    DeltaPage,
    DeltaResult,
    Event,
    EventWrite,
    GraphResult,
    Mailbox,
    RemovedEvent,
    Subscription,
    User,
)
from app.graph.sender import PREFER_IMMUTABLE_ID, GraphSender

MAX_BATCH = 20


class GraphClient(GraphSender):
    """One connection's view of Graph: its auth, the shared HTTP client and mailbox limiter.

    Every call returns Graph's `request-id` with its result and raises a GraphError subclass on
    failure. It never retries, except the one token refresh in GraphAuth; a 429/503 with
    Retry-After holds the mailbox back (in the limiter) before its next request is sent.
    """

    # --- users -----------------------------------------------------------------------------

    async def get_user(self, mailbox: str) -> GraphResult[User]:
        """`GET /users/{mailbox}` (needs User.Read.All besides Calendars.ReadWrite)."""
        response, cid = await self._send(
            "GET",
            self._url(self._user(mailbox)),
            target="user",
            mailbox=mailbox,
            params={"$select": "id,displayName,mail,userPrincipalName"},
        )
        return self._result(User.model_validate(response.json()), response, cid)

    async def check_mailbox(self, mailbox: str) -> GraphResult[Mailbox]:
        """The mailbox's default calendar: proves the address and Calendars.* consent at once."""
        response, cid = await self._send(
            "GET",
            self._url(self._user(mailbox) + "/calendar"),
            target="user",
            mailbox=mailbox,
            params={"$select": "id,name,owner"},
        )
        return self._result(Mailbox.model_validate(response.json()), response, cid)

    # --- events ----------------------------------------------------------------------------

    async def create_event(
        self, mailbox: str, event: EventWrite, *, transaction_id: str, tag: str
    ) -> GraphResult[Event]:
        """POST an event with its transactionId and the appointment-key tag."""
        body: dict[str, Any] = {
            **event,
            "transactionId": transaction_id,
            "singleValueExtendedProperties": [{"id": TAG_PROPERTY_ID, "value": tag}],
        }
        response, cid = await self._send(
            "POST",
            self._url(self._user(mailbox) + "/events"),
            target="events",
            mailbox=mailbox,
            json=body,
            prefer=[prefer_timezone(self.timezone)],
        )
        return self._result(Event.model_validate(response.json()), response, cid)

    async def find_events_by_tag(self, mailbox: str, tag_value: str) -> GraphResult[list[Event]]:
        """Events tagged with this appointment key (after a create of unknown outcome)."""
        url: str | None = self._url(self._user(mailbox) + "/events")
        params: dict[str, str] | None = {"$filter": tag_filter(tag_value), "$expand": TAG_EXPAND}
        events: list[Event] = []
        first: tuple[httpx.Response, str] | None = None
        while url is not None:
            response, cid = await self._send(
                "GET",
                url,
                target="events",
                mailbox=mailbox,
                params=params,
                prefer=[prefer_timezone(self.timezone)],
            )
            first = first or (response, cid)
            payload = response.json()
            events += [Event.model_validate(item) for item in payload.get("value", [])]
            next_link = payload.get("@odata.nextLink")
            url, params = (self._checked_link(next_link), None) if next_link else (None, None)
        assert first is not None
        return self._result(events, *first)

    async def get_event(self, mailbox: str, event_id: str) -> GraphResult[Event]:
        response, cid = await self._send(
            "GET",
            self._url(f"{self._user(mailbox)}/events/{self._id(event_id)}"),
            target="event",
            mailbox=mailbox,
            prefer=[prefer_timezone(self.timezone)],
        )
        return self._result(Event.model_validate(response.json()), response, cid)

    async def update_event(
        self,
        mailbox: str,
        event_id: str,
        changes: EventWrite | Mapping[str, Any],
        *,
        if_match: str | None = None,
    ) -> GraphResult[Event]:
        """PATCH exactly the given fields; with `if_match`, a stale changeKey is a 412."""
        response, cid = await self._send(
            "PATCH",
            self._url(f"{self._user(mailbox)}/events/{self._id(event_id)}"),
            target="event",
            mailbox=mailbox,
            json=dict(changes),
            prefer=[prefer_timezone(self.timezone)],
            headers={"If-Match": if_match_value(if_match)} if if_match else None,
        )
        return self._result(Event.model_validate(response.json()), response, cid)

    async def delete_event(self, mailbox: str, event_id: str) -> GraphResult[None]:
        """DELETE the event; a 404 raises ItemNotFound (which callers treat as done)."""
        response, cid = await self._send(
            "DELETE",
            self._url(f"{self._user(mailbox)}/events/{self._id(event_id)}"),
            target="event",
            mailbox=mailbox,
        )
        return self._result(None, response, cid)

    # --- calendarView delta ----------------------------------------------------------------

    def delta_start(
        self, mailbox: str, start: datetime, end: datetime, *, page_size: int | None = None
    ) -> AsyncIterator[DeltaPage]:
        """Pages of a new calendarView delta round over [start, end)."""
        url = self._url(self._user(mailbox) + "/calendarView/delta")
        params = {"startDateTime": graph_time(start), "endDateTime": graph_time(end)}
        return self._delta_pages(mailbox, url, params, page_size)

    def delta_follow(
        self, mailbox: str, link: str, *, page_size: int | None = None
    ) -> AsyncIterator[DeltaPage]:
        """Pages from a stored deltaLink (or a nextLink), as given but only on Graph's host."""
        return self._delta_pages(mailbox, self._checked_link(link), None, page_size)

    async def delta_sync(
        self,
        mailbox: str,
        *,
        link: str | None = None,
        start: datetime | None = None,
        end: datetime | None = None,
        page_size: int | None = None,
    ) -> DeltaResult:
        """A whole round: from `link`, or a new window `start`..`end`, up to the new deltaLink."""
        if link is not None:
            pages = self.delta_follow(mailbox, link, page_size=page_size)
        elif start is not None and end is not None:
            pages = self.delta_start(mailbox, start, end, page_size=page_size)
        else:
            raise ValueError("delta_sync needs a link, or start and end")
        result = DeltaResult(events=[], removed=[], delta_link="")
        async for page in pages:
            result.events += page.events
            result.removed += page.removed
            result.request_ids.append(page.request_id)
            if page.delta_link is not None:
                result.delta_link = page.delta_link
        return result

    async def _delta_pages(
        self,
        mailbox: str,
        url: str,
        params: Mapping[str, str] | None,
        page_size: int | None,
    ) -> AsyncIterator[DeltaPage]:
        prefer = [prefer_timezone(self.timezone)]
        if page_size is not None:
            prefer.append(f"odata.maxpagesize={page_size}")
        next_url: str | None = url
        while next_url is not None:
            response, cid = await self._send(
                "GET", next_url, target="delta", mailbox=mailbox, params=params, prefer=prefer
            )
            params = None  # the tokens in Graph's links encode the window
            payload = response.json()
            page = DeltaPage(
                events=[],
                removed=[],
                next_link=payload.get("@odata.nextLink"),
                delta_link=payload.get("@odata.deltaLink"),
                request_id=response.headers.get("request-id"),
                client_request_id=cid,
            )
            for item in payload.get("value", []):
                removed = item.get("@removed")
                if removed is not None:
                    reason = removed.get("reason") if isinstance(removed, dict) else None
                    page.removed.append(RemovedEvent(id=item["id"], reason=reason or "deleted"))
                else:
                    page.events.append(Event.model_validate(item))
            if page.next_link is None and page.delta_link is None:
                raise UnexpectedGraphError(
                    "delta page has neither @odata.nextLink nor @odata.deltaLink",
                    code="invalidDeltaPage",
                    status=response.status_code,
                    request_id=page.request_id,
                    client_request_id=cid,
                    permanent=False,
                )
            yield page
            next_url = self._checked_link(page.next_link) if page.next_link else None

    # --- subscriptions ---------------------------------------------------------------------

    async def create_subscription(
        self,
        *,
        resource: str,
        change_type: str,
        notification_url: str,
        lifecycle_notification_url: str | None,
        client_state: str,
        expiration: datetime,
    ) -> GraphResult[Subscription]:
        body: dict[str, Any] = {
            "changeType": change_type,
            "notificationUrl": notification_url,
            "resource": resource,
            "expirationDateTime": subscription_time(expiration),
            "clientState": client_state,
        }
        if lifecycle_notification_url is not None:
            body["lifecycleNotificationUrl"] = lifecycle_notification_url
        response, cid = await self._send(
            "POST", self._url("/subscriptions"), target="user", json=body
        )
        return self._result(Subscription.model_validate(response.json()), response, cid)

    async def get_subscription(self, subscription_id: str) -> GraphResult[Subscription]:
        response, cid = await self._send(
            "GET", self._url(f"/subscriptions/{self._id(subscription_id)}"), target="subscription"
        )
        return self._result(Subscription.model_validate(response.json()), response, cid)

    async def list_subscriptions(self) -> GraphResult[list[Subscription]]:
        """All of this app's subscriptions (every page)."""
        url: str | None = self._url("/subscriptions")
        subscriptions: list[Subscription] = []
        first: tuple[httpx.Response, str] | None = None
        while url is not None:
            response, cid = await self._send("GET", url, target="other")
            first = first or (response, cid)
            payload = response.json()
            subscriptions += [Subscription.model_validate(s) for s in payload.get("value", [])]
            next_link = payload.get("@odata.nextLink")
            url = self._checked_link(next_link) if next_link else None
        assert first is not None
        return self._result(subscriptions, *first)

    async def renew_subscription(
        self, subscription_id: str, expiration: datetime
    ) -> GraphResult[Subscription]:
        """PATCH expirationDateTime; ItemNotFound means it is gone and must be re-created."""
        response, cid = await self._send(
            "PATCH",
            self._url(f"/subscriptions/{self._id(subscription_id)}"),
            target="subscription",
            json={"expirationDateTime": subscription_time(expiration)},
        )
        return self._result(Subscription.model_validate(response.json()), response, cid)

    async def reauthorize_subscription(self, subscription_id: str) -> GraphResult[None]:
        response, cid = await self._send(
            "POST",
            self._url(f"/subscriptions/{self._id(subscription_id)}/reauthorize"),
            target="subscription",
        )
        return self._result(None, response, cid)

    async def delete_subscription(self, subscription_id: str) -> GraphResult[None]:
        response, cid = await self._send(
            "DELETE",
            self._url(f"/subscriptions/{self._id(subscription_id)}"),
            target="subscription",
        )
        return self._result(None, response, cid)

    # --- $batch ----------------------------------------------------------------------------

    async def batch(
        self, mailbox: str, requests: Sequence[BatchRequest], *, target: Target = "event"
    ) -> dict[str, BatchItemResult]:
        """Send requests for one mailbox in `$batch`es of at most 20; results keyed by id.

        Each item's failure is classified like a single call (its own status, headers, body)
        and returned, not raised; a failure of a whole batch raises.
        """
        ids = [request.id.lower() for request in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("batch request ids must be unique (Graph compares them ignoring case)")
        key = self.mailbox_key(mailbox)
        results: dict[str, BatchItemResult] = {}
        for offset in range(0, len(requests), MAX_BATCH):
            chunk = requests[offset : offset + MAX_BATCH]
            response, cid = await self._send(
                "POST",
                self._url("/$batch"),
                target="batch",
                mailbox=mailbox,
                json={"requests": [self._batch_item(request) for request in chunk]},
            )
            by_id = {
                str(item.get("id", "")).lower(): item
                for item in response.json().get("responses", [])
                if isinstance(item, dict)
            }
            for request in chunk:
                item = by_id.get(request.id.lower())
                results[request.id] = self._batch_result(request, item, key, target, mailbox, cid)
        return results

    def _batch_item(self, request: BatchRequest) -> dict[str, Any]:
        prefer = [PREFER_IMMUTABLE_ID]
        if request.method in ("GET", "POST", "PATCH"):
            prefer.append(prefer_timezone(self.timezone))
        headers = {"Prefer": ", ".join(prefer), **request.headers}
        item: dict[str, Any] = {"id": request.id, "method": request.method, "url": request.url}
        if request.body is not None:
            headers.setdefault("Content-Type", "application/json")
            item["body"] = request.body
        item["headers"] = headers
        return item

    def _batch_result(
        self,
        request: BatchRequest,
        item: Mapping[str, Any] | None,
        key: str,
        target: Target,
        mailbox: str,
        client_request_id: str,
    ) -> BatchItemResult:
        if item is None:
            missing = Transient(
                "Graph returned no response for this batch item",
                code="missingBatchResponse",
                client_request_id=client_request_id,
            )
            return BatchItemResult(id=request.id, status=0, headers={}, body=None, error=missing)
        status = int(item.get("status", 0))
        headers = {str(k): str(v) for k, v in (item.get("headers") or {}).items()}
        body = item.get("body")
        error: GraphError | None = None
        counters.graph_batch_item(status)
        if not 200 <= status < 300:
            self._note_throttle(key, status, headers)
            error = error_from_parts(
                status,
                headers,
                body,
                target=target,
                mailbox=mailbox,
                client_request_id=client_request_id,
                now=self.limiter.clock(),
            )
        return BatchItemResult(
            id=request.id, status=status, headers=headers, body=body, error=error
        )
