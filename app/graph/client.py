"""GraphClient: every Microsoft Graph call calbridge makes (events, calendarView delta,
subscriptions, `$batch`), on the process's HTTP pools (GraphHttp), classified into app.graph.errors.
"""

from __future__ import annotations

import functools
import uuid
import zlib
from collections.abc import AsyncIterator, Mapping, Sequence
from datetime import UTC, datetime
from json import dumps as json_dumps
from typing import Any
from urllib.parse import quote, urlsplit

import httpx

from app import metrics
from app.config import Settings
from app.graph.auth import GraphAuth, build_ssl_context
from app.graph.errors import (
    GraphError,
    Target,
    Transient,
    UnexpectedGraphError,
    error_from_parts,
    error_from_response,
    parse_retry_after,
)
from app.graph.limits import MailboxLimiter
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
from app.graph.transport import AiohttpTransport, send

#: The single-value extended property tagging calbridge's events with their appointment key.
#: The GUID is calbridge's own property set; never change it, or existing events lose their tag.
TAG_PROPERTY_ID = "String {19bb3d11-6575-4cf5-900e-b877ada95897} Name calbridgeAppointmentKey"

TAG_EXPAND = "singleValueExtendedProperties($filter=id eq '" + TAG_PROPERTY_ID + "')"

PREFER_IMMUTABLE_ID = 'IdType="ImmutableId"'
MAX_BATCH = 20
GRAPH_TIMEOUT = httpx.Timeout(30.0, connect=10.0)


_MAX_PARSED_URLS = 4096


@functools.cache
def _client_headers() -> list[tuple[str, str]]:
    """The headers an httpx client adds to every request (Accept, User-Agent...)."""
    with httpx.Client() as client:
        return list(client.headers.multi_items())


class GraphHttp:
    """The process's HTTP transports for Graph: one connection pool per shard of mailboxes.

    Sharded when the clients ran on httpcore, which polls every idle connection of a pool each
    time it hands one out (with one pool for the whole process that cost more CPU than the
    request itself). aiohttp's pool (app.graph.transport) has no such cost; the shards remain
    because they keep each pool small and a mailbox's requests on a few warm connections.
    """

    def __init__(
        self,
        transports: Sequence[httpx.AsyncBaseTransport],
        *,
        timeout: httpx.Timeout = GRAPH_TIMEOUT,
    ) -> None:
        """One shard per transport; requests are built here (`request`) and sent straight to
        their shard's transport (app.graph.transport.send), with no httpx client in between."""
        if not transports:
            raise ValueError("at least one transport")
        self._transports = list(transports)
        self._extensions = {"timeout": timeout.as_dict()}
        self._urls: dict[str, httpx.URL] = {}  # parsed once: a mailbox's URLs recur

    @classmethod
    def build(
        cls, settings: Settings, *, shards: int = 16, timeout: httpx.Timeout = GRAPH_TIMEOUT
    ) -> GraphHttp:
        """aiohttp transports (app.graph.transport), trusting the system's, certifi's and
        CALBRIDGE_CA_BUNDLE's CAs. HTTP/1.1 only: HTTP/2 has not been measured to help (Outlook
        allows 4 concurrent requests per mailbox anyway)."""
        verify = build_ssl_context(settings.ca_bundle)  # loading the CAs once is enough
        transports = [AiohttpTransport(verify=verify, max_connections=64) for _ in range(shards)]
        return cls(transports, timeout=timeout)

    def _shard(self, mailbox: str | None) -> int:
        if mailbox is None or len(self._transports) == 1:
            return 0
        return zlib.crc32(mailbox.casefold().encode()) % len(self._transports)

    def for_mailbox(self, mailbox: str | None) -> httpx.AsyncBaseTransport:
        """The transport of `mailbox`'s shard (the first for requests about no mailbox)."""
        return self._transports[self._shard(mailbox)]

    def request(
        self,
        mailbox: str | None,
        method: str,
        url: str,
        *,
        params: Mapping[str, str] | None = None,
        json: Any = None,
        headers: Sequence[tuple[str, str]] = (),
    ) -> tuple[httpx.Request, httpx.AsyncBaseTransport]:
        """The request an httpx client with this timeout would build (`url` absolute: its
        default headers, httpx's own JSON encoding), and the transport to send it on. Built
        directly: the client's URL merging and header handling cost twice the request itself
        (about 37 against 19 us)."""
        target = self._urls.get(url)
        if target is None:
            if len(self._urls) >= _MAX_PARSED_URLS:
                self._urls.clear()
            target = self._urls[url] = httpx.URL(url)
        all_headers = [*_client_headers(), *headers]
        content = None
        if json is not None:
            # httpx's own encoding (httpx._content.encode_json), so the bytes are the same.
            text = json_dumps(json, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
            content = text.encode("utf-8")
            all_headers.append(("Content-Type", "application/json"))
        request = httpx.Request(
            method,
            target,
            params=params or None,
            headers=all_headers,
            content=content,
            extensions=self._extensions,
        )
        return request, self.for_mailbox(mailbox)

    async def aclose(self) -> None:
        for transport in self._transports:
            await transport.aclose()


def events_path(mailbox: str) -> str:
    """`/users/{mailbox}/events`, relative to the version root (as `$batch` items want it)."""
    return "/users/" + quote(mailbox, safe="@") + "/events"


def event_path(mailbox: str, event_id: str) -> str:
    return events_path(mailbox) + "/" + quote(event_id, safe="=")


def odata_string(value: str) -> str:
    """An OData string literal: single quotes around, an embedded quote doubled."""
    return "'" + value.replace("'", "''") + "'"


def tag_filter(tag_value: str) -> str:
    return (
        "singleValueExtendedProperties/Any(ep: ep/id eq "
        f"{odata_string(TAG_PROPERTY_ID)} and ep/value eq {odata_string(tag_value)})"
    )


def prefer_timezone(timezone: str) -> str:
    return f'outlook.timezone="{timezone}"'


def _graph_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("delta window bounds must be timezone-aware")
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _if_match(value: str) -> str:
    """Accept an `@odata.etag` as is, or a bare changeKey (Graph's etag is `W/"<changeKey>"`)."""
    return value if value.startswith(('W/"', '"')) else f'W/"{value}"'


class GraphClient:
    """One connection's view of Graph: its auth, the shared HTTP client and mailbox limiter.

    Every call sends `Prefer: IdType="ImmutableId"` and a fresh `client-request-id`, returns
    Graph's `request-id` with its result and raises a GraphError subclass on failure. It never
    retries, except the one token refresh in GraphAuth; a 429/503 with Retry-After holds the
    mailbox back (in the limiter) before its next request is sent.
    """

    def __init__(
        self,
        http: GraphHttp,
        auth: GraphAuth,
        *,
        graph_url: str,
        limiter: MailboxLimiter,
        timezone: str = "UTC",
    ) -> None:
        self._http = http
        self._auth = auth
        self.graph_url = graph_url.rstrip("/")
        base = urlsplit(self.graph_url)
        self._origin = (base.scheme, base.netloc.lower())
        self._version_path = base.path  # "/v1.0": $batch item URLs are relative to it
        self.limiter = limiter
        self.timezone = timezone

    # --- plumbing --------------------------------------------------------------------------

    def mailbox_key(self, mailbox: str) -> str:
        """Outlook limits apply per app and mailbox, so the limiter key holds both."""
        return f"{self._auth.client_id.lower()}:{mailbox.lower()}"

    def mailbox_throttled_until(self, mailbox: str) -> datetime | None:
        """When the mailbox may be called again (feeds the queue's mailbox throttle)."""
        return self.limiter.throttled_until(self.mailbox_key(mailbox))

    def _url(self, path: str) -> str:
        return f"{self.graph_url}{path}"

    def _checked_link(self, link: str) -> str:
        """nextLink/deltaLink are followed as given, but only on Graph's own host: a link from a
        tampered response or database must not carry our bearer token elsewhere."""
        parts = urlsplit(link)
        if (parts.scheme.lower(), parts.netloc.lower()) != self._origin:
            raise UnexpectedGraphError(
                f"refusing to follow a link to another host: {parts.scheme}://{parts.netloc}",
                code="foreignLink",
                permanent=True,
            )
        return link

    @staticmethod
    def _user(mailbox: str) -> str:
        return "/users/" + quote(mailbox, safe="@")

    @staticmethod
    def _id(item_id: str) -> str:
        return quote(item_id, safe="=")

    async def _send(
        self,
        method: str,
        url: str,
        *,
        target: Target,
        mailbox: str | None = None,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        prefer: Sequence[str] = (),
        headers: Mapping[str, str] | None = None,
    ) -> tuple[httpx.Response, str]:
        """Send one request; return the 2xx response and our client-request-id, or raise."""
        client_request_id = str(uuid.uuid4())
        # One Prefer line per preference (RFC 7240 allows both forms; a single comma-joined
        # header is what $batch items get, separate lines are what Graph is seen to honour).
        header_list = [("client-request-id", client_request_id), ("Prefer", PREFER_IMMUTABLE_ID)]
        header_list += [("Prefer", value) for value in prefer]
        header_list += list((headers or {}).items())
        request, transport = self._http.request(
            mailbox, method, url, params=params, json=json, headers=header_list
        )
        key = self.mailbox_key(mailbox) if mailbox is not None else None
        if key is None:
            response = await self._transmit(transport, request, client_request_id, target)
        else:
            async with self.limiter.slot(key):
                response = await self._transmit(transport, request, client_request_id, target)
                self._note_throttle(key, response.status_code, response.headers)
        if response.is_success:
            return response, client_request_id
        raise error_from_response(
            response,
            target=target,
            mailbox=mailbox,
            client_request_id=client_request_id,
            now=self.limiter.clock(),
        )

    async def _transmit(
        self,
        transport: httpx.AsyncBaseTransport,
        request: httpx.Request,
        client_request_id: str,
        target: Target,
    ) -> httpx.Response:
        """Send `request`; every outcome is counted here, once (app.metrics)."""
        try:
            response = await send(transport, request, self._auth)
        except GraphError as exc:  # from the token provider inside the auth flow
            metrics.graph_response(request.method, target, "token_error")
            exc.client_request_id = exc.client_request_id or client_request_id
            raise
        except httpx.TimeoutException as exc:
            metrics.graph_response(request.method, target, "timeout")
            never_sent = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            raise Transient(
                f"Graph timed out: {exc!r}",
                code="timeout",
                sent=not never_sent,
                client_request_id=client_request_id,
            ) from exc
        except httpx.TransportError as exc:
            metrics.graph_response(request.method, target, "connection_error")
            raise Transient(
                f"Graph connection failed: {exc!r}",
                code="connection_error",
                sent=not isinstance(exc, httpx.ConnectError),
                client_request_id=client_request_id,
            ) from exc
        metrics.graph_response(request.method, target, response.status_code)
        return response

    def _note_throttle(self, key: str, status: int, headers: Mapping[str, str]) -> None:
        if status in (429, 503):
            lower = {k.lower(): v for k, v in headers.items()}
            seconds = parse_retry_after(lower.get("retry-after"), now=self.limiter.clock())
            if seconds is not None:
                self.limiter.throttle(key, seconds)

    @staticmethod
    def _result(value: Any, response: httpx.Response, client_request_id: str) -> GraphResult[Any]:
        return GraphResult(
            value=value,
            status=response.status_code,
            request_id=response.headers.get("request-id"),
            client_request_id=response.headers.get("client-request-id") or client_request_id,
        )

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
            headers={"If-Match": _if_match(if_match)} if if_match else None,
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
        params = {"startDateTime": _graph_time(start), "endDateTime": _graph_time(end)}
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
            "expirationDateTime": _subscription_time(expiration),
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
            json={"expirationDateTime": _subscription_time(expiration)},
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
        metrics.graph_batch_item(status)
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


def _subscription_time(value: datetime) -> str:
    if value.tzinfo is None:
        raise ValueError("subscription expiration must be timezone-aware")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")
