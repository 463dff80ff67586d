"""App-only tokens through MSAL: one ConfidentialClientApplication per connection, kept so its
token cache works and called off the event loop, and the httpx Auth that signs Graph requests.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from collections.abc import AsyncGenerator, Callable, Generator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import msal
from msal.exceptions import MsalServiceError
from pydantic import SecretStr

from app.graph.errors import (
    AuthenticationFailed,
    GraphError,
    Transient,
    error_from_token_result,
)
from app.tls import ssl_context

#: Entra login hosts MSAL knows (public cloud, its aliases and the national clouds, as in
#: msal.authority.WELL_KNOWN_AUTHORITY_HOSTS). Any other host, e.g. the sandbox, gets
#: `instance_discovery=False`, or MSAL would ask login.microsoftonline.com whether it is valid.
MICROSOFT_AUTHORITY_HOSTS = frozenset(
    {
        "login.microsoftonline.com",
        "login.microsoft.com",
        "login.windows.net",
        "sts.windows.net",
        "login.chinacloudapi.cn",
        "login.partner.microsoftonline.cn",
        "login.microsoftonline.de",
        "login-us.microsoftonline.com",
        "login.microsoftonline.us",
        "login.usgovcloudapi.net",
    }
)

#: MSAL treats a cached token with less than 5 minutes left as expired; so do we.
TOKEN_EXPIRY_MARGIN = 300.0
TOKEN_TIMEOUT = httpx.Timeout(15.0, connect=5.0)


@dataclass(frozen=True)
class GraphCredentials:
    """One connection's Entra app registration (client credentials flow)."""

    tenant: str
    client_id: str
    client_secret: SecretStr = field(repr=False)

    @property
    def secret_fingerprint(self) -> str:
        """Tells secrets apart without keeping them as a key (in memory only, never logged)."""
        return hashlib.sha256(self.client_secret.get_secret_value().encode()).hexdigest()[:16]


def graph_scope(graph_url: str) -> str:
    """`https://graph.microsoft.com/.default` for the Graph base URL (national clouds alike)."""
    parts = urlsplit(graph_url)
    return f"{parts.scheme}://{parts.netloc}/.default"


class MsalHttpClient:
    """MSAL's `http_client` (msal/oauth2cli/http.py) on a sync httpx.Client.

    MSAL calls `post(url, params=, data=, headers=)` and `get(url, params=, headers=)` and reads
    `status_code`, `text`, `headers`, `raise_for_status()`: an httpx.Response has all four. The
    one difference: MSAL may pass `data` as a str, which httpx wants as `content`.
    """

    def __init__(self, client: httpx.Client) -> None:
        self.client = client

    def post(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        data: Mapping[str, Any] | str | bytes | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        # Other keyword arguments (requests' `timeout`, `verify`) are settings of our client.
        if isinstance(data, str | bytes):
            return self.client.post(url, params=params, content=data, headers=headers)
        return self.client.post(url, params=params, data=data, headers=headers)

    def get(
        self,
        url: str,
        params: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> httpx.Response:
        return self.client.get(url, params=params, headers=headers)

    def close(self) -> None:
        self.client.close()


def build_msal_http_client(ca_bundle: Path | None = None) -> MsalHttpClient:
    return MsalHttpClient(
        httpx.Client(verify=ssl_context(ca_bundle), timeout=TOKEN_TIMEOUT, trust_env=False)
    )


_ERROR_JSON = re.compile(r"\{.*\}", re.DOTALL)
_TRANSIENT_OAUTH_ERRORS = frozenset({"temporarily_unavailable", "server_error"})


def _discovery_error(exc: ValueError) -> GraphError:
    """MSAL's constructor raises ValueError on a failed OIDC discovery, with Entra's JSON (e.g.
    AADSTS90002 tenant not found) only in the chained exception's text."""
    texts = [str(exc)] + ([str(exc.__context__)] if exc.__context__ else [])
    for text in texts:
        if match := _ERROR_JSON.search(text):
            try:
                body = json.loads(match.group(0))
            except ValueError:
                continue
            if isinstance(body, dict) and (body.get("error_codes") or body.get("error")):
                return error_from_token_result(body)
    return AuthenticationFailed(" ".join(texts), kind="other")


class TokenProvider:
    """One connection's MSAL app and its current token; concurrent callers share one acquisition."""

    def __init__(
        self,
        credentials: GraphCredentials,
        *,
        authority_host: str,
        scope: str,
        http_client: MsalHttpClient,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.credentials = credentials
        self.authority = f"{authority_host.rstrip('/')}/{credentials.tenant}"
        self.scope = scope
        self._http_client = http_client
        self._clock = clock
        self._app: msal.ConfidentialClientApplication | None = None
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._valid_until = 0.0

    async def token(self) -> str:
        """A valid access token: from memory, else from MSAL (its cache, else Entra)."""
        if self._token is not None and self._clock() < self._valid_until:
            return self._token
        async with self._lock:
            if self._token is not None and self._clock() < self._valid_until:
                return self._token
            result = await asyncio.to_thread(self._acquire)
            self._token = str(result["access_token"])
            expires_in = float(result.get("expires_in") or 600)  # MSAL's own default
            self._valid_until = self._clock() + expires_in - TOKEN_EXPIRY_MARGIN
            return self._token

    async def refresh(self, rejected: str) -> str:
        """A new token after Graph rejected `rejected` (evicted from MSAL's cache too)."""
        async with self._lock:
            if self._token == rejected:
                self._token = None
                await asyncio.to_thread(self._evict, rejected)
        return await self.token()

    def _acquire(self) -> dict[str, Any]:
        """Runs in a worker thread: MSAL does blocking HTTP (discovery, token)."""
        try:
            if self._app is None:
                self._app = self._build_app()
            result: dict[str, Any] = self._app.acquire_token_for_client(scopes=[self.scope])
        except httpx.TimeoutException as exc:
            raise Transient(f"token endpoint timed out: {exc!r}", code="token_timeout") from exc
        except httpx.TransportError as exc:
            raise Transient(
                f"token endpoint unreachable: {exc!r}",
                code="token_endpoint_unreachable",
                sent=not isinstance(exc, httpx.ConnectError),
            ) from exc
        except MsalServiceError as exc:  # MSAL's raise_for_status on a 5xx
            raise Transient(f"token endpoint failed: {exc}", code="token_endpoint_error") from exc
        if "access_token" in result:
            return result
        error = result.get("error")
        if error is not None and not isinstance(error, str):
            # Not Entra's OAuth error body but some other JSON (a gateway's, or Graph's
            # `{"error": {...}}` envelope, as on a 429): nothing in it says the credentials are
            # wrong, so it is retried rather than reported as an authentication failure. The
            # MSAL app is dropped: its telemetry keeps that `error` and would fail every later
            # request joining it as text (TypeError), leaving the connection without tokens.
            self._app = None
            raise Transient(
                f"token endpoint answered an unexpected error body: {error!r:.300}",
                code="token_endpoint_error",
            )
        if error in _TRANSIENT_OAUTH_ERRORS:
            raise Transient(str(result.get("error_description") or error), code=str(error))
        raise error_from_token_result(result)

    def _build_app(self) -> msal.ConfidentialClientApplication:
        host = urlsplit(self.authority).hostname or ""
        try:
            return msal.ConfidentialClientApplication(
                self.credentials.client_id,
                client_credential=self.credentials.client_secret.get_secret_value(),
                authority=self.authority,
                http_client=self._http_client,
                instance_discovery=None if host in MICROSOFT_AUTHORITY_HOSTS else False,
            )
        except ValueError as exc:
            raise _discovery_error(exc) from exc

    def _evict(self, token: str) -> None:
        if self._app is None:
            return
        cache = self._app.token_cache
        kind = msal.TokenCache.CredentialType.ACCESS_TOKEN
        for entry in list(cache.search(kind)):  # search() holds the cache lock while iterating
            if entry.get("secret") == token:
                cache.remove_at(entry)


class AuthRegistry:
    """The process's token providers, one per (tenant, client id, secret fingerprint)."""

    def __init__(
        self,
        *,
        authority_host: str,
        graph_url: str,
        http_client: MsalHttpClient,
        scope: str | None = None,
    ) -> None:
        self.authority_host = authority_host
        self.scope = scope or graph_scope(graph_url)
        self.http_client = http_client
        self._providers: dict[tuple[str, str], tuple[str, TokenProvider]] = {}

    def provider(self, credentials: GraphCredentials) -> TokenProvider:
        """The connection's provider; a changed secret replaces it (and its MSAL app)."""
        key = (credentials.tenant.lower(), credentials.client_id.lower())
        fingerprint = credentials.secret_fingerprint
        known = self._providers.get(key)
        if known is not None and known[0] == fingerprint:
            return known[1]
        provider = TokenProvider(
            credentials,
            authority_host=self.authority_host,
            scope=self.scope,
            http_client=self.http_client,
        )
        self._providers[key] = (fingerprint, provider)
        return provider

    def auth(self, credentials: GraphCredentials) -> GraphAuth:
        return GraphAuth(self.provider(credentials))

    def forget(self, tenant: str, client_id: str) -> None:
        """Drop a connection's app (disconnect), so nothing keeps its secret or tokens."""
        self._providers.pop((tenant.lower(), client_id.lower()), None)

    def close(self) -> None:
        self.http_client.close()


def _is_invalid_token(response: httpx.Response) -> bool:
    try:
        body = response.json()
    except ValueError:
        return True  # a 401 without Graph's envelope still means the token was refused
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code in (None, "InvalidAuthenticationToken")


class GraphAuth(httpx.Auth):
    """Bearer token on every request; on `401 InvalidAuthenticationToken` one refresh and resend."""

    def __init__(self, provider: TokenProvider) -> None:
        self.provider = provider

    @property
    def client_id(self) -> str:
        return self.provider.credentials.client_id

    def sync_auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response]:
        raise RuntimeError("GraphAuth needs an httpx.AsyncClient (token calls run in a thread)")
        yield request  # pragma: no cover

    async def async_auth_flow(
        self, request: httpx.Request
    ) -> AsyncGenerator[httpx.Request, httpx.Response]:
        token = await self.provider.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code != 401:
            return
        # Overriding async_auth_flow bypasses httpx's `requires_response_body`: read it here.
        await response.aread()
        if _is_invalid_token(response):
            token = await self.provider.refresh(token)
            request.headers["Authorization"] = f"Bearer {token}"
            yield request
