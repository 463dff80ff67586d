"""The admin check of a connection's bookingtime app: a token for the organisation through the
bookingtime client, and the state (`ok`, `rejected`, `unreachable`) it leaves on the connection.

Refused credentials, and an app not permitted for the organisation, are `rejected`; throttling,
server or network trouble and a timeout are `unreachable` (bookingtime gave no verdict).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from app.bookingtime_api import (
    AppCredentials,
    BookingtimeClient,
    BookingtimeError,
    CredentialsRefused,
    OrganizationNotPermitted,
)
from app.config import BookingtimeSettings
from app.connections import repository
from app.connections.checks import VERIFY_TIMEOUT, CheckResult, text
from app.crypto import SecretBox, SecretKeyError
from app.models import Connection
from app.models.base import utcnow

CHECK_NAME = "bookingtime"


@dataclass(frozen=True)
class BookingtimeCheck:
    """A check's result and the credentials it was made with (recorded only while they hold)."""

    result: CheckResult
    client_id: str
    secret_encrypted: str

    @property
    def state(self) -> str:
        if self.result.ok:
            return "ok"
        return "unreachable" if self.result.pending else "rejected"


def _result(ok: bool | None, code: str, locale: str, params: dict[str, Any]) -> CheckResult:
    return CheckResult(CHECK_NAME, ok, code, text(code, locale, params), params)


def _failure(error: BookingtimeError, client_id: str, locale: str) -> CheckResult:
    if isinstance(error, CredentialsRefused):
        return _result(False, "bookingtime_credentials_refused", locale, {"client_id": client_id})
    if isinstance(error, OrganizationNotPermitted):
        return _result(False, "bookingtime_not_permitted", locale, {"client_id": client_id})
    params = {"client_id": client_id, "error": error.message}
    if error.permanent:
        return _result(False, "bookingtime_error", locale, params)
    return _result(None, "bookingtime_unavailable", locale, params)


async def check_bookingtime(
    connection: Connection,
    *,
    http: httpx.AsyncClient,
    settings: BookingtimeSettings,
    secret_box: SecretBox,
    locale: str,
    wait_seconds: float = VERIFY_TIMEOUT,
) -> BookingtimeCheck | None:
    """Get an access token for the organisation with the stored app; None when none is set."""
    client_id = connection.bookingtime_client_id
    secret_encrypted = connection.bookingtime_client_secret_encrypted
    if client_id is None or secret_encrypted is None:
        return None
    try:
        secret = secret_box.decrypt(secret_encrypted)
    except SecretKeyError:
        result = _result(False, "bookingtime_secret_unreadable", locale, {})
        return BookingtimeCheck(result, client_id, secret_encrypted)
    # A client of its own: its token cache must not answer for credentials just changed.
    client = BookingtimeClient.from_settings(
        http, AppCredentials(client_id, SecretStr(secret)), settings
    )
    try:
        async with asyncio.timeout(wait_seconds):
            await client.broker.access_token(connection.organization_id)
    except BookingtimeError as exc:
        result = _failure(exc, client_id, locale)
    except TimeoutError:
        error = f"no answer within {wait_seconds:g} s"
        result = _result(
            None, "bookingtime_unavailable", locale, {"client_id": client_id, "error": error}
        )
    else:
        result = _result(True, "bookingtime_token_acquired", locale, {"client_id": client_id})
    return BookingtimeCheck(result, client_id, secret_encrypted)


async def record_bookingtime_check(
    session: AsyncSession,
    *,
    connection: Connection,
    check: BookingtimeCheck,
    now: datetime | None = None,
) -> None:
    """Store the check's state and error on the connection, unless its credentials changed
    while it ran."""
    failed = not check.result.ok
    await repository.set_bookingtime_state(
        session,
        connection_id=connection.id,
        client_id=check.client_id,
        secret_encrypted=check.secret_encrypted,
        values={
            "bookingtime_state": check.state,
            "bookingtime_checked_at": now or utcnow(),
            "bookingtime_error_code": check.result.code if failed else None,
            "bookingtime_error_params": dict(check.result.params) if failed else None,
        },
    )
