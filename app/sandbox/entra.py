"""Entra ID as MSAL sees it: OpenID discovery and the client-credentials token endpoint, with the
AADSTS errors the real endpoint sends (graph-protocol.md §5.1, §6)."""

from __future__ import annotations

import base64
import hmac
import json
import secrets
import uuid
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.sandbox import errors
from app.sandbox.errors import EntraError
from app.sandbox.pipeline import runtime_of
from app.sandbox.state import GRAPH_AUDIENCE, Tenant, Token

router = APIRouter()

GRAPH_DEFAULT_SCOPE = "https://graph.microsoft.com/.default"
TOKEN_HEADERS = {"Cache-Control": "no-store, no-cache", "Pragma": "no-cache", "Expires": "-1"}


def _tenant(request: Request, ref: str) -> Tenant:
    tenant = runtime_of(request).state.find_tenant(ref)
    if tenant is None:
        raise errors.tenant_not_found(ref)
    return tenant


@router.get("/{tenant_ref}/v2.0/.well-known/openid-configuration")
async def openid_configuration(request: Request, tenant_ref: str) -> JSONResponse:
    tenant = _tenant(request, tenant_ref)
    base = str(request.base_url).rstrip("/")
    tid = tenant.id
    body = {
        "token_endpoint": f"{base}/{tid}/oauth2/v2.0/token",
        "token_endpoint_auth_methods_supported": [
            "client_secret_post",
            "private_key_jwt",
            "client_secret_basic",
        ],
        "jwks_uri": f"{base}/{tid}/discovery/v2.0/keys",
        "response_modes_supported": ["query", "fragment", "form_post"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "issuer": f"{base}/{tid}/v2.0",
        "request_uri_parameter_supported": False,
        "userinfo_endpoint": "https://graph.microsoft.com/oidc/userinfo",
        "authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/authorize",
        "device_authorization_endpoint": f"{base}/{tid}/oauth2/v2.0/devicecode",
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
        "end_session_endpoint": f"{base}/{tid}/oauth2/v2.0/logout",
        "claims_supported": ["sub", "iss", "aud", "exp", "iat", "tid", "roles"],
        "kerberos_endpoint": f"{base}/{tid}/kerberos",
        "tenant_region_scope": "EU",
        "cloud_instance_name": "microsoftonline.com",
        "cloud_graph_host_name": "graph.windows.net",
        "msgraph_host": "graph.microsoft.com",
    }
    return JSONResponse(body, headers={"Cache-Control": "max-age=86400, private"})


def _own_scopes(request: Request) -> set[str]:
    """The `.default` scopes that name the sandbox's Graph: Graph's own, and the sandbox's origin
    (calbridge derives the scope from CALBRIDGE_GRAPH_URL, as national clouds need), with its port
    and without: kiota (msgraph-sdk) drops the port on purpose, as Entra wants a bare host there."""
    url = request.url
    host = url.hostname or ""
    host = f"[{host}]" if ":" in host else host
    return {
        GRAPH_DEFAULT_SCOPE,
        f"{url.scheme}://{url.netloc}/.default",
        f"{url.scheme}://{host}/.default",
    }


def _missing(parameter: str) -> EntraError:
    return EntraError(
        400,
        "invalid_request",
        900144,
        f"The request body must contain the following parameter: '{parameter}'.",
    )


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _jwt_like(claims: dict[str, Any]) -> str:
    """A JWT-shaped bearer (readable claims, random signature); Graph trusts only issued ones."""
    header = {"typ": "JWT", "alg": "RS256", "kid": "sandbox"}
    return ".".join(
        [
            _b64url(json.dumps(header).encode()),
            _b64url(json.dumps(claims).encode()),
            _b64url(secrets.token_bytes(32)),
        ]
    )


@router.post("/{tenant_ref}/oauth2/v2.0/token")
async def token(request: Request, tenant_ref: str) -> JSONResponse:
    state = runtime_of(request).state
    with state.lock:
        state.token_requests += 1
    tenant = _tenant(request, tenant_ref)
    form = await request.form()
    fields = {key: value for key, value in form.items() if isinstance(value, str)}
    client_id, client_secret = fields.get("client_id"), fields.get("client_secret")
    authorization = request.headers.get("authorization", "")
    if authorization.lower().startswith("basic "):
        try:
            decoded = base64.b64decode(authorization[6:]).decode()
        except (ValueError, UnicodeDecodeError):
            decoded = ""
        basic_id, _, basic_secret = decoded.partition(":")
        client_id, client_secret = client_id or basic_id, basic_secret
    grant_type = fields.get("grant_type")
    if not grant_type:
        raise _missing("grant_type")
    if grant_type != "client_credentials":
        raise EntraError(
            400,
            "unsupported_grant_type",
            70003,
            f"The app requested an unsupported grant type '{grant_type}'.",
        )
    if not client_id:
        raise _missing("client_id")
    with state.lock:
        app = tenant.apps.get(client_id)
        if app is None:
            raise errors.app_not_found(client_id, tenant_ref)
        if not client_secret:
            raise EntraError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or"
                " 'client_secret'.",
            )
        now = state.clock.now()
        matching = [
            s for s in app.secrets if hmac.compare_digest(s.value.encode(), client_secret.encode())
        ]
        if not matching:
            raise errors.invalid_secret(client_id)
        if all(s.expires_at <= now for s in matching):
            raise errors.expired_secret(client_id)
        scope = fields.get("scope")
        if not scope:
            raise _missing("scope")
        if not _own_scopes(request) & set(scope.split()):
            raise EntraError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must"
                " have a scope value with /.default suffixed to the resource identifier"
                " (application ID URI).",
            )
        expires_at = now + state.token_lifetime
        roles = frozenset(app.roles)
        claims = {
            "aud": GRAPH_AUDIENCE,
            "iss": f"https://sts.windows.net/{tenant.id}/",
            "iat": int(now.timestamp()),
            "nbf": int(now.timestamp()),
            "exp": int(expires_at.timestamp()),
            "appid": client_id,
            "app_displayname": app.display_name,
            "idtyp": "app",
            "oid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{tenant.id}:{client_id}")),
            "roles": sorted(roles),
            "tid": tenant.id,
            "ver": "1.0",
        }
        value = _jwt_like(claims)
        state.tokens[value] = Token(value, tenant.id, client_id, roles, now, expires_at)
    lifetime = int(state.token_lifetime.total_seconds())
    body = {
        "token_type": "Bearer",
        "expires_in": lifetime,
        "ext_expires_in": lifetime,
        "access_token": value,
    }
    return JSONResponse(body, headers=TOKEN_HEADERS, media_type="application/json; charset=utf-8")
