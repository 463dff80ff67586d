"""What the admin routers take from the request: the session, the process's shared clients and
settings, and the path parameters every router spells the same way."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Path, Request
from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings
from app.connections.schemas import (
    EMPLOYEE_ID_EXAMPLE,
    ID_MAX_LENGTH,
    ID_PATTERN,
    ORGANIZATION_ID_EXAMPLE,
)
from app.connections.tenant import GLOBAL_AUTHORITY_HOSTS
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.db import get_session

DbSession = Annotated[AsyncSession, Depends(get_session)]

OrganizationId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description="bookingtime organisation id (letters, digits, `_`, `-`; at most 64).",
        examples=[ORGANIZATION_ID_EXAMPLE],
    ),
]

EmployeeId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=ID_MAX_LENGTH,
        pattern=ID_PATTERN,
        description="bookingtime booking-resource id of the employee.",
        examples=[EMPLOYEE_ID_EXAMPLE],
    ),
]


def get_settings(request: Request) -> Settings:
    """FastAPI dependency: the app's settings."""
    settings: Settings = request.app.state.settings
    return settings


AppSettings = Annotated[Settings, Depends(get_settings)]


def get_secret_box(request: Request) -> SecretBox:
    """FastAPI dependency: the process's SecretBox (built once in the lifespan)."""
    box: SecretBox = request.app.state.secret_box
    return box


def get_graph(request: Request) -> GraphClients:
    """FastAPI dependency: the process's Graph clients (built once in the lifespan)."""
    graph: GraphClients = request.app.state.graph
    return graph


def get_authority_hosts(request: Request) -> tuple[str, ...]:
    """FastAPI dependency: login hosts accepted in tenant URLs (Microsoft's and the configured)."""
    settings: Settings = request.app.state.settings
    return (*GLOBAL_AUTHORITY_HOSTS, settings.authority_host)


def get_webhook_secret_grace(request: Request) -> timedelta:
    """FastAPI dependency: how long a replaced webhook secret stays valid."""
    settings: Settings = request.app.state.settings
    return timedelta(seconds=settings.webhook_secret_grace_seconds)


def request_locale(accept_language: str | None, default: str) -> str:
    """`de` or `en` from the first matching Accept-Language tag, else the connection's locale."""
    for part in (accept_language or "").split(","):
        tag = part.split(";")[0].strip().lower()
        if tag.startswith("de"):
            return "de"
        if tag.startswith("en"):
            return "en"
    return default
