"""bookingtime's two-step OAuth flow and the httpx Auth that signs App API requests.

1. `client_credentials` (client id + secret) → a refresh token for the app, valid 30 days;
2. `refresh_token` (client id + refresh token + organization_id, no secret) → an access token
   for that one organisation, valid 300 s.

One cached access token per organisation, reused until 60 s before it expires (as bookingtime's
SDK does); the refresh token is renewed a day before its 30 days and whenever it is refused. One
token request at a time per organisation (and one for the refresh token): concurrent callers
wait for it and share the result. Tokens and the secret are never logged and never part of an
error.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncGenerator, Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
from pydantic import SecretStr

from app.bookingtime_api.envelope import decode_json
from app.bookingtime_api.errors import (
    BookingtimeError,
    CredentialsRefused,
    Transient,
    UnexpectedResponse,
    error_from_token_endpoint,
)

log = logging.getLogger(__name__)

#: An access token is not used in its last minute (the SDK's "crop 1 minute to be save").
ACCESS_TOKEN_MARGIN = timedelta(seconds=60)
#: The refresh token (30 days) is renewed a day early, never in the middle of its last poll.
REFRESH_TOKEN_MARGIN = timedelta(days=1)
#: What the organisation segment of an App API path looks like (the SDK's own pattern).
_ORGANIZATION_IN_PATH = re.compile(r"/organization/(f6[A-Za-z0-9]{30})/")

Clock = Callable[[], datetime]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class AppCredentials:
    """A bookingtime app's client credentials."""

    client_id: str
    client_secret: SecretStr = field(repr=False)


@dataclass(frozen=True, slots=True)
class _Token:
    value: str = field(repr=False)
    use_until: datetime


def _use_until(now: datetime, expires_in: float, margin: timedelta) -> datetime:
    lifetime = timedelta(seconds=expires_in)
    # A lifetime shorter than twice the margin (never seen) is used for half its length.
    return now + (lifetime - margin if lifetime > 2 * margin else lifetime / 2)


def organization_in(url: httpx.URL) -> str | None:
    """The organisation an App API URL addresses, as the SDK finds it; None for the others."""
    match = _ORGANIZATION_IN_PATH.search(url.path)
    return match.group(1) if match else None


class TokenBroker:
    """One app's tokens: its refresh token and an access token per organisation."""

    def __init__(
        self,
        http: httpx.AsyncClient,
        credentials: AppCredentials,
        *,
        auth_url: str,
        clock: Clock = utc_now,
    ) -> None:
        self._http = http
        self.credentials = credentials
        self.auth_url = auth_url
        self._clock = clock
        self._refresh: _Token | None = None
        self._refresh_lock = asyncio.Lock()
        self._access: dict[str | None, _Token] = {}
        self._locks: dict[str | None, asyncio.Lock] = {}

    def now(self) -> datetime:
        return self._clock()

    def _fresh(self, token: _Token | None) -> str | None:
        return token.value if token is not None and self._clock() < token.use_until else None

    async def access_token(self, organization_id: str | None) -> str:
        """A valid access token for the organisation (None: a token bound to none)."""
        if (token := self._fresh(self._access.get(organization_id))) is not None:
            return token
        lock = self._locks.setdefault(organization_id, asyncio.Lock())
        async with lock:
            if (token := self._fresh(self._access.get(organization_id))) is not None:
                return token
            return await self._mint(organization_id)

    async def renew_access_token(self, organization_id: str | None, rejected: str) -> str:
        """A new access token after the API refused `rejected` (shared by concurrent callers)."""
        lock = self._locks.setdefault(organization_id, asyncio.Lock())
        async with lock:
            current = self._access.get(organization_id)
            if current is not None and current.value != rejected:
                if (token := self._fresh(current)) is not None:
                    return token
            self._access.pop(organization_id, None)
            return await self._mint(organization_id)

    async def _mint(self, organization_id: str | None) -> str:
        """The refresh grant, under the organisation's lock; a refused refresh token is renewed
        once and the grant asked again."""
        refresh = await self._refresh_token(rejected=None)
        try:
            body = await self._refresh_grant(refresh, organization_id)
        except CredentialsRefused:
            refresh = await self._refresh_token(rejected=refresh)
            body = await self._refresh_grant(refresh, organization_id)
        value, expires_in = _token_fields(body, "access_token", organization_id)
        self._access[organization_id] = _Token(
            value, _use_until(self._clock(), expires_in, ACCESS_TOKEN_MARGIN)
        )
        return value

    async def _refresh_token(self, *, rejected: str | None) -> str:
        if rejected is None and (token := self._fresh(self._refresh)) is not None:
            return token
        async with self._refresh_lock:
            current = self._refresh
            if current is not None and current.value != rejected:
                if (token := self._fresh(current)) is not None:
                    return token
            body = await self._token_request(
                {
                    "grant_type": "client_credentials",
                    "client_id": self.credentials.client_id,
                    "client_secret": self.credentials.client_secret.get_secret_value(),
                },
                organization_id=None,
            )
            value, expires_in = _token_fields(body, "refresh_token", None)
            self._refresh = _Token(
                value, _use_until(self._clock(), expires_in, REFRESH_TOKEN_MARGIN)
            )
            return value

    async def _refresh_grant(self, refresh: str, organization_id: str | None) -> Any:
        form = {
            "grant_type": "refresh_token",
            "client_id": self.credentials.client_id,
            "refresh_token": refresh,
        }
        if organization_id is not None:
            form["organization_id"] = organization_id
        return await self._token_request(form, organization_id=organization_id)

    async def _token_request(self, form: dict[str, str], *, organization_id: str | None) -> Any:
        """POST the form (urlencoded, as the SDK sends it); the decoded 200 body, or raise."""
        grant = form["grant_type"]
        try:
            response = await self._http.post(self.auth_url, data=form)
        except httpx.TimeoutException as exc:
            raise self._logged(
                Transient(
                    f"the token endpoint timed out ({grant}): {type(exc).__name__}",
                    code="timeout",
                    organization_id=organization_id,
                ),
                grant,
            ) from exc
        except httpx.TransportError as exc:
            raise self._logged(
                Transient(
                    f"the token endpoint is unreachable ({grant}): {type(exc).__name__}",
                    code="connection_error",
                    organization_id=organization_id,
                    sent=not isinstance(exc, httpx.ConnectError),
                ),
                grant,
            ) from exc
        try:
            body = decode_json(
                response.status_code, response.content, organization_id=organization_id
            )
        except Transient as exc:
            body = None
            if response.status_code == 200:
                raise self._logged(exc, grant) from None
        if response.status_code != 200:
            raise self._logged(
                error_from_token_endpoint(
                    response.status_code,
                    response.headers,
                    body,
                    grant_type=grant,
                    organization_id=organization_id,
                    raw=response.content,
                    now=self._clock(),
                ),
                grant,
            )
        return body

    def _logged(self, error: BookingtimeError, grant: str) -> BookingtimeError:
        # The message holds bookingtime's answer and our words, never the form we sent.
        log.warning(
            "bookingtime token request failed: client_id=%s grant=%s organization_id=%s: %s",
            self.credentials.client_id,
            grant,
            error.organization_id,
            error,
        )
        return error


def _token_fields(body: Any, key: str, organization_id: str | None) -> tuple[str, float]:
    """The token and its lifetime in seconds from a 200 answer of the token endpoint."""
    value = body.get(key) if isinstance(body, dict) else None
    expires_in = body.get("expires_in") if isinstance(body, dict) else None
    if not isinstance(value, str) or not value:
        raise UnexpectedResponse(
            f"the token endpoint answered 200 without a {key}",
            status=200,
            code="unexpected_shape",
            organization_id=organization_id,
            permanent=False,
        )
    if isinstance(expires_in, str) and expires_in.isdigit():
        expires_in = int(expires_in)
    if not isinstance(expires_in, int | float) or isinstance(expires_in, bool) or expires_in <= 0:
        raise UnexpectedResponse(
            f"the token endpoint answered 200 with expires_in={expires_in!r}",
            status=200,
            code="unexpected_shape",
            organization_id=organization_id,
            permanent=False,
        )
    return value, float(expires_in)


class BookingtimeAuth(httpx.Auth):
    """Bearer token of the organisation in the request's URL; on a 401 one new token, one resend.

    The organisation is read from the URL the request is about to go to, so a token minted for
    one organisation cannot be sent to another's URL.
    """

    def __init__(self, broker: TokenBroker) -> None:
        self.broker = broker

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("BookingtimeAuth needs an httpx.AsyncClient")
        yield request  # pragma: no cover

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        organization_id = organization_in(request.url)
        token = await self.broker.access_token(organization_id)
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        token = await self.broker.renew_access_token(organization_id, token)
        request.headers["Authorization"] = f"Bearer {token}"
        yield request
