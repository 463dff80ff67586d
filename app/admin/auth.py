"""Bearer-token authentication and authorization for the admin API.

Tokens are random strings shown once at creation and stored as SHA-256 hashes (they carry enough
entropy that a slow hash adds nothing). `CALBRIDGE_ADMIN_TOKEN` is accepted as a bootstrap token
with the `admin` role. A `read` token may only use safe methods (GET, HEAD, OPTIONS): the rule is
keyed on the method in `require_admin`, the one dependency every admin router carries, so a new
write route cannot forget it. Failed authentications are counted per client address, and a
further bad token after too many is refused with 429; a valid token is always accepted, so the
limit can never lock out the admin.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.ext.asyncio import AsyncSession

from app.admin import repository
from app.config import Settings
from app.db import get_session
from app.http.problems import ProblemError
from app.models import AdminToken
from app.models.base import utcnow

TOKEN_PREFIX = "cbt_"  # noqa: S105 (a prefix, not a secret)
ROLES = ("read", "admin")
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})

# Ten wrong tokens a minute is far more than a mistyped token costs, far too few to guess one.
MAX_FAILURES = 10
FAILURE_WINDOW_SECONDS = 60.0

bearer_scheme = HTTPBearer(
    auto_error=False, description="an admin token: `Authorization: Bearer …`"
)


@dataclass(frozen=True)
class Principal:
    """Who is calling the admin API."""

    name: str
    role: str

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


class RevokedTokenNotFoundError(LookupError):
    """No live token has that name or id."""


class AuthFailureLimiter:
    """Failed authentications per client address in a sliding window, in this process's memory.

    Per process on purpose: it costs no database write per failure, and with N API replicas a
    client gets N times the budget. Successful authentications neither count nor reset the
    window, and are never refused: only a further bad token from a blocked address gets the 429.
    """

    def __init__(
        self,
        *,
        max_failures: int = MAX_FAILURES,
        window_seconds: float = FAILURE_WINDOW_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.max_failures = max_failures
        self.window_seconds = window_seconds
        self._clock = clock
        self._failures: dict[str, deque[float]] = {}

    def _recent(self, address: str) -> deque[float] | None:
        stamps = self._failures.get(address)
        if stamps is None:
            return None
        horizon = self._clock() - self.window_seconds
        while stamps and stamps[0] <= horizon:
            stamps.popleft()
        if not stamps:
            del self._failures[address]
            return None
        return stamps

    def retry_after(self, address: str) -> int | None:
        """Seconds until `address` may try again, or None when it is not blocked."""
        stamps = self._recent(address)
        if stamps is None or len(stamps) < self.max_failures:
            return None
        # Blocked until enough of the window's failures age out to fall below the limit.
        release = stamps[-self.max_failures] + self.window_seconds
        return max(1, math.ceil(release - self._clock()))

    def failed(self, address: str) -> None:
        """Count one failed authentication of `address`."""
        self._recent(address)
        if len(self._failures) > 100_000:
            # A flood from many addresses must not grow memory without bound.
            self._failures.clear()
        self._failures.setdefault(address, deque()).append(self._clock())


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_token(session: AsyncSession, *, name: str, role: str = "admin") -> str:
    """Store a new token for `name` and return it; only its hash is kept."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = new_token()
    await repository.add_token(
        session, AdminToken(name=name, token_hash=hash_token(token), role=role)
    )
    return token


async def list_tokens(session: AsyncSession, *, include_revoked: bool = False) -> list[AdminToken]:
    """Stored tokens (live ones unless `include_revoked`), oldest first."""
    return await repository.list_tokens(session, include_revoked=include_revoked)


async def revoke_token(session: AsyncSession, *, name_or_id: str) -> list[AdminToken]:
    """Revoke the live tokens named `name_or_id` (or with that id); RevokedTokenNotFoundError
    when there is none."""
    rows = await repository.live_tokens_named(session, name_or_id)
    if not rows:
        raise RevokedTokenNotFoundError(name_or_id)
    now = utcnow()
    for row in rows:
        row.revoked_at = now
    await session.flush()
    return rows


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401,
        "unauthorized",
        "Authentication required",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="calbridge"'},
    )


def _limiter(request: Request) -> AuthFailureLimiter:
    limiter: AuthFailureLimiter | None = getattr(request.app.state, "auth_failure_limiter", None)
    if limiter is None:
        limiter = request.app.state.auth_failure_limiter = AuthFailureLimiter()
    return limiter


def _client_address(request: Request) -> str:
    # The peer address as the server saw it. uvicorn replaces it with X-Forwarded-For only for
    # peers listed in CALBRIDGE_TRUSTED_PROXIES (default none): a header anyone could set would
    # let an attacker pick a fresh address per guess.
    return request.client.host if request.client is not None else "unknown"


async def _authenticate(
    request: Request, session: AsyncSession, credentials: HTTPAuthorizationCredentials | None
) -> Principal:
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise _unauthorized("send an admin token as `Authorization: Bearer <token>`")
    token = credentials.credentials
    settings: Settings = request.app.state.settings
    if settings.admin_token is not None:
        bootstrap = settings.admin_token.get_secret_value()
        if bootstrap and hmac.compare_digest(token.encode(), bootstrap.encode()):
            return Principal(name="bootstrap", role="admin")
    row = await repository.live_token_by_hash(session, hash_token(token))
    if row is None:
        raise _unauthorized("the admin token is unknown or revoked")
    row.last_used_at = utcnow()
    return Principal(name=row.name, role=row.role)


async def require_admin(
    request: Request,
    session: Annotated[AsyncSession, Depends(get_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
) -> Principal:
    """FastAPI dependency: the caller's principal; a 401 problem without a valid token, 429 for a
    bad token after too many failures from the address, 403 when a `read` token uses anything but
    a safe method. A valid token is accepted whatever the address's failures."""
    limiter = _limiter(request)
    address = _client_address(request)
    try:
        # The token is checked before the limit: a blocked address (a whole office behind one
        # NAT, or one an attacker floods) must not lock the admin out. So the limit no longer
        # hides which guess was right; what makes guessing hopeless is the tokens' entropy
        # (256 bits; a short bootstrap token gets a warning at start).
        principal = await _authenticate(request, session, credentials)
    except ProblemError:
        if credentials is None or not credentials.credentials:
            # Only a presented token is a guess; a request without one reveals nothing.
            raise
        wait = limiter.retry_after(address)
        if wait is not None:
            # Not counted: the window ends as announced in Retry-After.
            raise ProblemError(
                429,
                "too_many_requests",
                "Too many failed authentications",
                f"too many failed authentications from this address; retry in {wait} s",
                headers={"Retry-After": str(wait)},
            ) from None
        limiter.failed(address)
        raise
    if request.method not in SAFE_METHODS and not principal.is_admin:
        raise ProblemError(
            403,
            "forbidden",
            "Not allowed for this token",
            f"the token {principal.name!r} has the role {principal.role!r}, which may only read; "
            f"{request.method} needs a token with the role 'admin'",
        )
    return principal


AdminPrincipal = Annotated[Principal, Depends(require_admin)]
