"""bookingtime's auth server and how the App API checks its bearer tokens (reference §1).

`client_credentials` (id + secret) gives a 30-day refresh token; `refresh_token` (id + refresh
token, no secret, optionally an organization_id) gives a 5-minute access token bound to that
organisation. Both lifetimes run on the sandbox clock."""

from __future__ import annotations

import base64
import hmac
import json
import re
import secrets
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from app.sandbox.bookingtime.envelope import (
    JSON,
    TOKEN_HEADERS,
    TOKEN_PATH,
    AuthError,
    BookingtimeError,
)
from app.sandbox.bookingtime.store import BookingtimeStore, Grant, Organization
from app.sandbox.pipeline import runtime_of

router = APIRouter()

LOCALE = re.compile(r"[a-z]{2}(_[A-Z]{2})?")
GRANT_TYPES = ("client_credentials", "refresh_token")


def store_of(request: Request) -> BookingtimeStore:
    return runtime_of(request).bookingtime


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt_like(claims: dict[str, Any]) -> str:
    """JWT-shaped (readable claims, random signature), like bookingtime's; only issued ones pass."""
    header = {"typ": "JWT", "alg": "RS256"}
    return ".".join(
        [
            _b64url(json.dumps(header).encode()),
            _b64url(json.dumps(claims).encode()),
            _b64url(secrets.token_bytes(32)),
        ]
    )


def _issue(
    store: BookingtimeStore, kind: str, client_id: str, organization_id: str | None, now: datetime
) -> Grant:
    lifetime = store.access_token_lifetime if kind == "access" else store.refresh_token_lifetime
    expires_at = now + lifetime
    claims = {
        "iss": "https://auth.bookingtime.com/",
        "sub": client_id,
        "typ": kind,
        "organizationId": organization_id,
        "iat": int(now.timestamp()),
        "exp": int(expires_at.timestamp()),
    }
    grant = Grant(
        _jwt_like(claims),
        "access" if kind == "access" else "refresh",
        client_id,
        organization_id,
        expires_at,
    )
    store.grants[grant.value] = grant
    return grant


async def _fields(request: Request) -> dict[str, str]:
    """The form fields: urlencoded, multipart or JSON (Auth0, its model, takes all three)."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        try:
            data = json.loads(await request.body())
        except ValueError:
            raise AuthError(400, "invalid_request", "The request body is not valid JSON.") from None
        if not isinstance(data, dict):
            raise AuthError(400, "invalid_request", "The request body must be a JSON object.")
        return {key: value for key, value in data.items() if isinstance(value, str)}
    form = await request.form()
    return {key: value for key, value in form.items() if isinstance(value, str)}


def _required(fields: dict[str, str], name: str) -> str:
    value = fields.get(name)
    if not value:
        raise AuthError(400, "invalid_request", f"Missing required parameter: {name}")
    return value


@router.post(TOKEN_PATH)
async def token(request: Request) -> JSONResponse:
    store = store_of(request)
    fields = await _fields(request)
    grant_type = fields.get("grant_type", "")
    organization_id = fields.get("organization_id") or None
    with store.lock:
        store.token_requests[(grant_type, organization_id)] += 1
    if not grant_type:
        raise AuthError(400, "invalid_request", "Missing required parameter: grant_type")
    if grant_type not in GRANT_TYPES:
        raise AuthError(
            400, "unsupported_grant_type", f"Grant type '{grant_type}' is not supported."
        )
    client_id = _required(fields, "client_id")
    with store.lock:
        app = store.apps.get(client_id)
        now = store.clock.now()
        if grant_type == "client_credentials":
            secret = fields.get("client_secret", "")
            if app is None or not hmac.compare_digest(app.secret.encode(), secret.encode()):
                raise AuthError(401, "invalid_client", "Client authentication failed.")
            grant = _issue(store, "refresh", client_id, None, now)
            body: dict[str, Any] = {"refresh_token": grant.value, "token_type": "Bearer"}
        else:
            refresh_token = _required(fields, "refresh_token")
            if app is None:
                raise AuthError(401, "invalid_client", "Client authentication failed.")
            refresh = store.grants.get(refresh_token)
            if (
                refresh is None
                or refresh.kind != "refresh"
                or refresh.client_id != client_id
                or refresh.expires_at <= now
            ):
                raise AuthError(400, "invalid_grant", "Unknown or expired refresh token.")
            if organization_id is not None and organization_id not in app.organizations:
                raise AuthError(
                    403,
                    "access_denied",
                    f"The app is not permitted to access organization '{organization_id}'.",
                )
            grant = _issue(store, "access", client_id, organization_id, now)
            body = {"access_token": grant.value, "token_type": "Bearer"}
    body["expires_in"] = int((grant.expires_at - now).total_seconds())
    return JSONResponse(body, headers=TOKEN_HEADERS, media_type=JSON)


def _unauthorized(text: str) -> BookingtimeError:
    return BookingtimeError(401, text, headers={"WWW-Authenticate": "Bearer"})


async def authorized_organization(
    request: Request, locale: str, organization_id: str
) -> Organization:
    """The organisation of an App API URL, once the bearer token may act for it: 401 for a
    missing, unknown, expired or refresh token, 404 for an unknown organisation, 403 for a token
    bound to another (or no) organisation or an app no longer permitted."""
    if LOCALE.fullmatch(locale) is None:
        raise BookingtimeError(404, f'No route found for "{request.method} {request.url.path}"')
    store = store_of(request)
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        raise _unauthorized("Authentication required: send an access token as Bearer.")
    with store.lock:
        grant = store.grants.get(value)
        if grant is None:
            raise _unauthorized("The access token is invalid.")
        if grant.kind != "access":
            raise _unauthorized("Using a refresh token for API requests is not valid.")
        if grant.expires_at <= store.clock.now():
            raise _unauthorized("The access token has expired.")
        org = store.organizations.get(organization_id)
        if org is None:
            raise BookingtimeError(404, "Organization not found.", parameter="organizationId")
        if grant.organization_id != org.id:
            raise BookingtimeError(403, "The access token is not valid for this organization.")
        app = store.apps.get(grant.client_id)
        if app is None or org.id not in app.organizations:
            raise BookingtimeError(403, "The app is not permitted for this organization.")
        return org


OrganizationOf = Annotated[Organization, Depends(authorized_organization)]
