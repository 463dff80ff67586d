"""Sending one App API request: the process's shared httpx client for bookingtime, the URL
`{api_url}{locale}/organization/{org}/{path}`, the headers bookingtime's SDK sends, and every
failure classified (app.bookingtime_api.errors). Pages of an `index` route are followed here.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote

import httpx

from app.bookingtime_api.auth import BookingtimeAuth, TokenBroker
from app.bookingtime_api.envelope import Envelope, Page, envelope_of, page
from app.bookingtime_api.errors import (
    Transient,
    UnexpectedResponse,
    error_from_api,
)
from app.bookingtime_api.values import entity_id
from app.config import Settings
from app.tls import ssl_context

#: bookingtime's own plugins allow 15 s per request; the rest of the limits are httpx's.
DEFAULT_TIMEOUT_SECONDS = 15.0
#: Pages followed at most: 400 pages of 25 are the 10,000 records a `list` answer holds.
MAX_PAGES = 400
JSON_CONTENT_TYPE = "application/json; charset=utf-8"


def build_http_client(settings: Settings) -> httpx.AsyncClient:
    """The process's one client for bookingtime's auth server and App API: CALBRIDGE_CA_BUNDLE
    trusted, `CALBRIDGE_BOOKINGTIME__TIMEOUT_SECONDS` per request, no redirects followed (as the
    SDK), proxies from the environment."""
    return httpx.AsyncClient(
        verify=ssl_context(settings.ca_bundle),
        timeout=httpx.Timeout(settings.bookingtime.timeout_seconds),
        follow_redirects=False,
    )


def segment(value: str) -> str:
    """A path segment from a value we do not control (a customId): every reserved character
    escaped, so it cannot leave its segment."""
    return quote(value, safe="")


class ApiSender:
    """One app's way to the App API: its tokens on the shared client."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        broker: TokenBroker,
        *,
        api_url: str,
        locale: str,
        max_pages: int = MAX_PAGES,
    ) -> None:
        self._http = http
        self.broker = broker
        self._auth = BookingtimeAuth(broker)
        self.api_url = api_url if api_url.endswith("/") else f"{api_url}/"
        self.locale = locale
        self.max_pages = max_pages

    def url(self, organization_id: str, path: str) -> str:
        org = entity_id(organization_id, prefix="f6", name="organization_id")
        return f"{self.api_url}{self.locale}/organization/{org}/{path}"

    async def send(
        self,
        method: str,
        organization_id: str,
        path: str,
        *,
        body: Any = None,
    ) -> Envelope:
        """Send one request; the 2xx answer's envelope, or raise a BookingtimeError."""
        # The SDK sends its JSON content type on every call, with an empty body when it has none.
        content = b"" if body is None else json.dumps(body).encode()
        request = self._http.build_request(
            method,
            self.url(organization_id, path),
            content=content,
            headers={"Content-Type": JSON_CONTENT_TYPE, "Accept": "application/json"},
        )
        response = await self._transmit(request, organization_id)
        if response.is_success:
            return envelope_of(
                response.status_code, response.content, organization_id=organization_id
            )
        try:
            decoded: Any = json.loads(response.content)
        except (ValueError, RecursionError):
            decoded = None
        raise error_from_api(
            response.status_code,
            response.headers,
            decoded,
            organization_id=organization_id,
            raw=response.content,
            now=self.broker.now(),
        )

    async def _transmit(self, request: httpx.Request, organization_id: str) -> httpx.Response:
        # A failed token request inside the auth flow raises its BookingtimeError through here.
        try:
            return await self._http.send(request, auth=self._auth)
        except httpx.TimeoutException as exc:
            # No connection was had: the request never left, so a write may be sent again
            # without looking for it first.
            never_sent = isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout)
            raise Transient(
                f"bookingtime timed out: {type(exc).__name__}",
                code="timeout",
                sent=not never_sent,
                organization_id=organization_id,
            ) from exc
        except httpx.TransportError as exc:
            raise Transient(
                f"bookingtime is unreachable: {type(exc).__name__}: {exc}",
                code="connection_error",
                sent=not isinstance(exc, httpx.ConnectError),
                organization_id=organization_id,
            ) from exc

    async def pages(self, organization_id: str, path: str) -> AsyncIterator[Page]:
        """Pages 1, 2, … of an `index` route (`{path}/{page}`) up to its `pageTotal`; more than
        `max_pages` pages is an error, not a silently shortened list."""
        number = 1
        while True:
            envelope = await self.send("GET", organization_id, f"{path}/{number}")
            current = page(envelope, number=number, organization_id=organization_id)
            yield current
            if number >= current.page_total:
                return
            if number >= self.max_pages:
                raise UnexpectedResponse(
                    f"{path} has {current.page_total} pages; calbridge follows at most "
                    f"{self.max_pages}",
                    status=envelope.status,
                    code="too_many_pages",
                    organization_id=organization_id,
                    permanent=True,
                )
            number += 1
