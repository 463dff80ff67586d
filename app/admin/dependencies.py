"""What the admin routers take from the request: the session, the process's shared clients and
settings, the language of the answer, and the path parameters every router spells the same
way."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

import httpx
from fastapi import Depends, Header, Path, Request, Response
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
from app.history.messages import Locale, as_locale, preferred_locale

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


def get_bookingtime_http(request: Request) -> httpx.AsyncClient:
    """FastAPI dependency: the process's httpx client for bookingtime (built once in the
    lifespan)."""
    http: httpx.AsyncClient = request.app.state.bookingtime
    return http


def get_authority_hosts(request: Request) -> tuple[str, ...]:
    """FastAPI dependency: login hosts accepted in tenant URLs (Microsoft's and the configured)."""
    settings: Settings = request.app.state.settings
    return (*GLOBAL_AUTHORITY_HOSTS, settings.authority_host)


def get_webhook_secret_grace(request: Request) -> timedelta:
    """FastAPI dependency: how long a replaced webhook secret stays valid."""
    settings: Settings = request.app.state.settings
    return timedelta(seconds=settings.webhook_secret_grace_seconds)


@dataclass(frozen=True)
class Language:
    """The language of an answer's texts: the one `Accept-Language` prefers of `de` and `en`
    (`asked`), else the connection's `locale`. Answers vary by the header."""

    asked: Locale | None
    response: Response

    def of(self, default: str) -> Locale:
        """The asked language, else `default` (the connection's); said in `Content-Language`."""
        locale = self.asked or as_locale(default)
        self.response.headers["Content-Language"] = locale
        return locale

    def headers(self) -> dict[str, str]:
        """The language headers, for an endpoint that builds its response itself."""
        return {
            name: value
            for name in ("Vary", "Content-Language")
            if (value := self.response.headers.get(name)) is not None
        }


def get_language(
    response: Response,
    accept_language: Annotated[
        str | None,
        Header(
            max_length=512,
            description="Preferred language of the readable texts (`de` or `en`, e.g. "
            "`de-DE,de;q=0.9`); without either, the connection's `locale`.",
        ),
    ] = None,
) -> Language:
    """FastAPI dependency: the answer's language (see Language)."""
    response.headers["Vary"] = "Accept-Language"
    if (asked := preferred_locale(accept_language)) is not None:
        response.headers["Content-Language"] = asked
    return Language(asked, response)


AnswerLanguage = Annotated[Language, Depends(get_language)]
