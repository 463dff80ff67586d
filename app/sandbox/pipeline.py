"""What every Graph request goes through, in Graph's order: token (401), permission (403), user
(404), access policy (403), mailbox (404), injected faults, then the mailbox's throttle (429)."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any, cast

from fastapi import Request
from fastapi.responses import JSONResponse

from app.sandbox import errors
from app.sandbox.errors import GRAPH_JSON, GraphError
from app.sandbox.faults import FAILURES, FaultRule
from app.sandbox.runtime import Runtime
from app.sandbox.state import CALENDAR_ROLES, GRAPH_AUDIENCE, Mailbox, Tenant, Token, User

HOLD_LIMIT_SECONDS = 30.0


class Dropped(Exception):
    """The connection was cut on purpose; nothing more may be sent."""


def runtime_of(request: Request) -> Runtime:
    return cast(Runtime, request.app.state.runtime)


def graph_base(request: Request) -> str:
    return str(request.base_url).rstrip("/") + "/v1.0"


def graph_response(
    body: dict[str, Any], *, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    all_headers = {"OData-Version": "4.0", **(headers or {})}
    return JSONResponse(body, status_code=status, headers=all_headers, media_type=GRAPH_JSON)


def fault_error(rule: FaultRule) -> GraphError:
    if rule.kind == "429":
        return GraphError(
            429,
            "TooManyRequests",
            "Please retry again later.",
            headers={"Retry-After": rule.retry_after or "1"},
            inner={"code": "429", "message": "Please retry after", "status": "429"},
        )
    if rule.kind == "503":
        # errors.md: a 503 tells the client to retry after Retry-After.
        return GraphError(
            503,
            "serviceNotAvailable",
            "The service is temporarily unavailable for maintenance or is overloaded. You may"
            " repeat the request after a delay, which may be specified in a Retry-After header.",
            headers={"Retry-After": rule.retry_after or "2"},
        )
    headers = {"Retry-After": rule.retry_after} if rule.retry_after else {}
    return GraphError(
        504,
        "UnknownError",
        "The server, while acting as a proxy, did not receive a timely response from the upstream"
        " server it needed to access in attempting to complete the request.",
        headers=headers,
    )


async def fail(rules: list[FaultRule], scope: MutableMapping[str, Any]) -> None:
    """Apply the failing rule, if any fired: an error response, a cut or a hang."""
    for rule in rules:
        if rule.kind not in FAILURES:
            continue
        if rule.kind == "drop":
            await cast(Callable[[], Awaitable[None]], scope["sandbox.drop"])()
            raise Dropped
        if rule.kind == "timeout":
            await cast(Callable[[float], Awaitable[None]], scope["sandbox.hang"])(rule.seconds)
            raise Dropped
        raise fault_error(rule)


async def delay(rules: list[FaultRule]) -> None:
    for rule in rules:
        if rule.kind == "latency":
            await asyncio.sleep(rule.seconds)
        elif rule.kind == "hold" and rule.gate is not None:
            await asyncio.to_thread(rule.gate.wait, HOLD_LIMIT_SECONDS)


def _token_claims(value: str) -> dict[str, Any] | None:
    parts = value.split(".")
    if len(parts) != 3:
        return None
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (binascii.Error, ValueError):
        return None
    return claims if isinstance(claims, dict) else None


def authenticate(request: Request) -> Token:
    """The bearer token, or Graph's 401 with the message for what is wrong with it."""
    runtime = runtime_of(request)
    header = request.headers.get("authorization", "")
    scheme, _, value = header.partition(" ")
    value = value.strip()
    if not header or (scheme.lower() == "bearer" and not value):
        raise errors.invalid_token("Access token is empty.")
    if scheme.lower() != "bearer":
        raise errors.invalid_token("CompactToken parsing failed with error code: 80049217")
    claims = _token_claims(value)
    if claims is None:
        raise errors.invalid_token("CompactToken parsing failed with error code: 80049217")
    with runtime.state.lock:
        token = runtime.state.tokens.get(value)
    # A token this sandbox did not issue (or issued for another resource) is "foreign".
    if token is None or claims.get("aud") != GRAPH_AUDIENCE:
        raise errors.invalid_token("Access token validation failure. Invalid audience.")
    now = runtime.state.clock.now()
    if not token.issued_at <= now < token.expires_at:
        raise errors.invalid_token("Access token has expired or is not yet valid.")
    return token


@dataclass
class MailboxCall:
    token: Token
    tenant: Tenant
    user: User
    mailbox: Mailbox


def _user_ref_for_message(ref: str, tenant: Tenant) -> str:
    return ref if "@" in ref else f"{ref}@{tenant.id}"


@asynccontextmanager
async def mailbox_request(request: Request, user_ref: str) -> AsyncIterator[MailboxCall]:
    """Admit one calendar request to `user_ref`'s mailbox, holding its concurrency slot."""
    runtime = runtime_of(request)
    state = runtime.state
    token = authenticate(request)
    if not token.roles & CALENDAR_ROLES:
        raise errors.access_denied()
    with state.lock:
        tenant = state.tenants[token.tenant_id]
        user = tenant.find_user(user_ref)
        if user is None:
            raise errors.invalid_user(_user_ref_for_message(user_ref, tenant))
        if (token.client_id, user.id) in tenant.blocked:
            raise errors.policy_blocked()
        if not user.has_mailbox:
            raise errors.mailbox_not_enabled()
        mailbox = state.mailboxes.setdefault(user.id, Mailbox(user.id))
    keys = (user.id.casefold(), user.user_principal_name.casefold())
    rules = runtime.faults.pick(request.url.path, keys)
    await fail(rules, request.scope)
    release = runtime.throttle.enter((token.client_id, user.id), state.clock.now())
    try:
        await delay(rules)
        yield MailboxCall(token, tenant, user, mailbox)
    finally:
        release()
