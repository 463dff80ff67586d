"""Bearer-token authentication for the admin API.

Tokens are random strings shown once at creation and stored as SHA-256 hashes (they carry enough
entropy that a slow hash adds nothing). `CALBRIDGE_ADMIN_TOKEN` is accepted as a bootstrap token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.db import get_session
from app.models import AdminToken
from app.models.base import utcnow
from app.problems import ProblemError

TOKEN_PREFIX = "cbt_"  # noqa: S105 (a prefix, not a secret)
ROLES = ("read", "admin")

_bearer = HTTPBearer(auto_error=False, description="an admin token: `Authorization: Bearer …`")


@dataclass(frozen=True)
class Principal:
    """Who is calling the admin API."""

    name: str
    role: str


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


async def create_token(session: AsyncSession, *, name: str, role: str = "admin") -> str:
    """Store a new token for `name` and return it; only its hash is kept."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    token = new_token()
    session.add(AdminToken(name=name, token_hash=hash_token(token), role=role))
    await session.flush()
    return token


def _unauthorized(detail: str) -> ProblemError:
    return ProblemError(
        401,
        "unauthorized",
        "Authentication required",
        detail,
        headers={"WWW-Authenticate": 'Bearer realm="calbridge"'},
    )


async def require_admin(
    request: Request,
    session: Annotated[AsyncSession, Depends(get_session)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Principal:
    """FastAPI dependency: the caller's principal, or a 401 problem."""
    if credentials is None or credentials.scheme.lower() != "bearer" or not credentials.credentials:
        raise _unauthorized("send an admin token as `Authorization: Bearer <token>`")
    token = credentials.credentials
    settings: Settings = request.app.state.settings
    if settings.admin_token is not None:
        bootstrap = settings.admin_token.get_secret_value()
        if bootstrap and hmac.compare_digest(token.encode(), bootstrap.encode()):
            return Principal(name="bootstrap", role="admin")
    row = await session.scalar(
        select(AdminToken).where(
            AdminToken.token_hash == hash_token(token), AdminToken.revoked_at.is_(None)
        )
    )
    if row is None:
        raise _unauthorized("the admin token is unknown or revoked")
    row.last_used_at = utcnow()
    return Principal(name=row.name, role=row.role)


AdminPrincipal = Annotated[Principal, Depends(require_admin)]
