"""GraphClient: every Microsoft Graph call calbridge makes (users, events, calendarView delta,
subscriptions), each sent and classified by GraphSender (app.graph.sender); `$batch` comes
from BatchSender (app.graph.batch).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeVar

import httpx

from app.graph.batch import BatchSender
from app.graph.errors import Target, UnexpectedGraphError
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

T = TypeVar("T")


class GraphClient(BatchSender):
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
        return await self._every_page(
            self._url(self._user(mailbox) + "/events"),
            Event.model_validate,
            target="events",
            mailbox=mailbox,
            params={"$filter": tag_filter(tag_value), "$expand": TAG_EXPAND},
            prefer=[prefer_timezone(self.timezone)],
        )

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
        return await self._every_page(
            self._url("/subscriptions"), Subscription.model_validate, target="other"
        )

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

    # --- paged collections ----------------------------------------------------------------

    async def _every_page(
        self,
        url: str,
        parse: Callable[[Any], T],
        *,
        target: Target,
        mailbox: str | None = None,
        params: Mapping[str, str] | None = None,
        prefer: Sequence[str] = (),
    ) -> GraphResult[list[T]]:
        """Every item of a paged collection, following nextLinks (on Graph's host only), with
        the first page's request-id."""
        next_url: str | None = url
        items: list[T] = []
        first: tuple[httpx.Response, str] | None = None
        while next_url is not None:
            response, cid = await self._send(
                "GET", next_url, target=target, mailbox=mailbox, params=params, prefer=prefer
            )
            first = first or (response, cid)
            payload = response.json()
            items += [parse(item) for item in payload.get("value", [])]
            next_link = payload.get("@odata.nextLink")
            next_url = self._checked_link(next_link) if next_link else None
            params = None  # a nextLink carries the query
        assert first is not None
        return self._result(items, *first)
