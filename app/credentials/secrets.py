"""The client secret's lifecycle: its state (ok, expiring, expired, rejected), the expiry
warnings recorded once per crossing, Entra's rejection recorded on the connection, and the check
of a new secret against Entra before a rotation swaps it in.
"""

from __future__ import annotations

import asyncio
import logging
import math
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from app.credentials import repository
from app.credentials.clients import GraphClients
from app.graph.auth import GraphCredentials, TokenProvider
from app.graph.errors import AuthenticationFailed, GraphError
from app.history import repository as history
from app.history.messages import error_code, message
from app.http.problems import ProblemError
from app.models import Connection, SyncRecord
from app.models.base import utcnow

log = logging.getLogger(__name__)

SecretState = Literal["ok", "expiring", "expired", "rejected"]

# Days before `client_secret_expires_at` at which a warning is recorded, most distant first.
WARNING_DAYS = (30, 14, 7, 1)
EXPIRING_DAYS = WARNING_DAYS[0]
# Entra's verdicts that say the secret itself is bad (as opposed to the tenant or the app id).
REJECTION_CODES = frozenset({"secret_invalid", "secret_expired"})
# How long a rotation waits for Entra, and what a client is told to wait when Entra is away.
ROTATION_TIMEOUT = 10.0
ROTATION_RETRY_AFTER_SECONDS = 30


@dataclass(frozen=True)
class SecretStatus:
    """A connection's client-secret state and whole days until it expires (None: no date)."""

    state: SecretState
    days_left: int | None


def secret_status(connection: Connection, *, now: datetime | None = None) -> SecretStatus:
    """`rejected` when Entra refused the secret since it was stored, else what the date says."""
    now = now or utcnow()
    expires_at = connection.client_secret_expires_at
    days_left = None
    if expires_at is not None:
        days_left = max(0, math.floor((expires_at - now) / timedelta(days=1)))
    if connection.client_secret_rejected_at is not None:
        return SecretStatus("rejected", days_left)
    if expires_at is None:
        return SecretStatus("ok", None)
    if expires_at <= now:
        return SecretStatus("expired", days_left)
    if expires_at - now <= timedelta(days=EXPIRING_DAYS):
        return SecretStatus("expiring", days_left)
    return SecretStatus("ok", days_left)


def reset_for_new_secret(connection: Connection, *, new_secret: bool, new_expiry: bool) -> None:
    """Forget what described the previous secret or date: Entra's rejection, warnings sent."""
    if new_secret:
        connection.client_secret_rejected_at = None
        connection.client_secret_rejected_code = None
    if new_secret or new_expiry:
        connection.client_secret_warned_days = None


async def mark_rejected(
    session: AsyncSession, *, connection_id: int, code: str, now: datetime | None = None
) -> None:
    """Record on the connection that Entra refused its secret (`code` in REJECTION_CODES)."""
    if code not in REJECTION_CODES:
        return
    await repository.set_secret_rejected(
        session, connection_id=connection_id, code=code, at=now or utcnow()
    )


async def clear_rejected(session: AsyncSession, *, connection_id: int) -> None:
    """Entra accepted the secret after all (a success): it is no longer `rejected`."""
    await repository.clear_secret_rejected(session, connection_id=connection_id)


async def record_token_check(
    session: AsyncSession, *, connection: Connection, code: str, ok: bool | None
) -> None:
    """What a verify's token check says about the stored secret: Entra refused it, or it works
    again after a rejection."""
    if code in REJECTION_CODES:
        await mark_rejected(session, connection_id=connection.id, code=code)
    elif ok and connection.client_secret_rejected_at is not None:
        await clear_rejected(session, connection_id=connection.id)


def due_warning(connection: Connection, *, now: datetime) -> int | None:
    """The most urgent warning threshold crossed and not yet recorded, if any.

    Only the most urgent one: after a pause (or a date entered late) the history gets one
    current warning, not a burst of stale ones. An expired secret gets none: its state says it.
    """
    expires_at = connection.client_secret_expires_at
    if expires_at is None or expires_at <= now:
        return None
    left = expires_at - now
    crossed = [days for days in WARNING_DAYS if left <= timedelta(days=days)]
    if not crossed:
        return None
    most_urgent = min(crossed)
    warned = connection.client_secret_warned_days
    if warned is not None and warned <= most_urgent:
        return None
    return most_urgent


def _warning_record(connection: Connection, days: int) -> SyncRecord:
    assert connection.client_secret_expires_at is not None
    params = {
        "days": days,
        "expires_at": connection.client_secret_expires_at.strftime("%Y-%m-%d %H:%M UTC"),
    }
    code = "secret_expiring_soon" if days == 1 else "secret_expiring"
    return SyncRecord(
        connection_id=connection.id,
        action="secret",
        status="warning",
        code=code,
        message=message(code, connection.locale, params),
        details=params,
    )


async def announce_expiry(session: AsyncSession, *, now: datetime) -> int:
    """Record (and log) each connection's newly crossed expiry warning; how many were recorded."""
    recorded = 0
    for connection in await repository.list_connections_with_expiry(session):
        days = due_warning(connection, now=now)
        if days is None:
            continue
        history.add_record(session, _warning_record(connection, days))
        connection.client_secret_warned_days = days
        recorded += 1
        log.warning(
            "client secret of connection %s expires within %d day(s), at %s",
            connection.organization_id,
            days,
            connection.client_secret_expires_at,
        )
    await session.flush()
    return recorded


class SecretRejectedError(ProblemError):
    """Entra refused the new client secret: nothing was changed."""

    def __init__(self, *, reason: str, text: str, aadsts_code: int | None) -> None:
        aadsts = f" (AADSTS{aadsts_code})" if aadsts_code is not None else ""
        super().__init__(
            422,
            "client_secret_rejected",
            "Microsoft refused the new client secret",
            f"{text}{aadsts} The stored client secret is unchanged.",
            reason=reason,
            aadsts_code=aadsts_code,
            errors=[{"field": "client_secret", "message": text}],
        )


class EntraUnavailableError(ProblemError):
    """Entra could not be asked about the new secret: nothing was changed, try again later."""

    def __init__(self) -> None:
        super().__init__(
            503,
            "entra_unavailable",
            "Microsoft Entra cannot be reached",
            "the new client secret could not be checked against Microsoft Entra (unreachable or "
            "timed out); nothing was changed, send the request again later",
            headers={"Retry-After": str(ROTATION_RETRY_AFTER_SECONDS)},
        )


async def verify_new_secret(
    graph: GraphClients,
    *,
    tenant: str,
    client_id: str,
    client_secret: str,
    locale: str,
    wait_seconds: float = ROTATION_TIMEOUT,
) -> None:
    """Acquire a token with the new secret; SecretRejectedError or EntraUnavailableError if not.

    A provider of its own, not the registry's: the registry keeps one per app, and a wrong
    secret must not displace the working one (and its cached token) that syncs still use.
    """
    credentials = GraphCredentials(
        tenant=tenant, client_id=client_id, client_secret=SecretStr(client_secret)
    )
    provider = TokenProvider(
        credentials,
        authority_host=graph.auth.authority_host,
        scope=graph.auth.scope,
        http_client=graph.auth.http_client,
    )
    try:
        async with asyncio.timeout(wait_seconds):
            await provider.token()
    except TimeoutError as exc:
        raise EntraUnavailableError() from exc
    except GraphError as exc:
        if exc.retryable:
            raise EntraUnavailableError() from exc
        code, params = error_code(exc, mailbox="", tenant=tenant, client_id=client_id)
        aadsts = exc.aadsts_code if isinstance(exc, AuthenticationFailed) else None
        raise SecretRejectedError(
            reason=code, text=message(code, locale, params), aadsts_code=aadsts
        ) from exc
