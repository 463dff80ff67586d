"""Graph's /subscriptions routes for Outlook events: create (with the validation handshake), list,
get, renew, reauthorize, delete (graph-protocol.md §1.1, §1.2, §1.6, §1.7)."""

from __future__ import annotations

import asyncio
import json
import re
import uuid
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from app.sandbox import errors
from app.sandbox.errors import GraphError
from app.sandbox.notifications import Notifier, graph_time
from app.sandbox.pipeline import authenticate, graph_base, graph_response, runtime_of
from app.sandbox.runtime import Runtime
from app.sandbox.state import Token, User
from app.sandbox.subscription_store import MAX_LIFETIME, MIN_LIFETIME, Subscription

router = APIRouter()

# §1.1: Calendars.Read is the least privilege; ReadBasic is not enough to subscribe.
SUBSCRIBE_ROLES = frozenset({"Calendars.Read", "Calendars.ReadWrite"})
CHANGE_TYPES = ("created", "updated", "deleted")
TLS_VERSIONS = ("v1_0", "v1_1", "v1_2", "v1_3")
MAX_CLIENT_STATE = 128  # §1.1 names 128 and 255; the stricter one keeps clients honest
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1"})
PROPERTIES = frozenset(
    {
        "@odata.type",
        "changeType",
        "notificationUrl",
        "lifecycleNotificationUrl",
        "resource",
        "expirationDateTime",
        "clientState",
        "latestSupportedTlsVersion",
        "includeResourceData",
        "encryptionCertificate",
        "encryptionCertificateId",
        "notificationQueryOptions",
        "notificationUrlAppId",
        "notificationContentType",
        "id",
        "applicationId",
        "creatorId",
    }
)
_RESOURCE = re.compile(r"^/?users/([^/()]+)/events/?$", re.IGNORECASE)
_ME = re.compile(r"^/?me/events/?$", re.IGNORECASE)


def invalid(message: str) -> GraphError:
    return GraphError(400, "InvalidRequest", message)


def not_found() -> GraphError:
    # Not in graph-protocol.md: Graph's generic not-found code with Outlook's wording.
    return GraphError(404, "ResourceNotFound", "The object was not found.")


def ensure_notifier(runtime: Runtime) -> Notifier:
    """Start delivery on the running (server) loop the first time it is needed."""
    store = runtime.subscriptions
    with store.lock:
        if store.notifier is not None:
            return store.notifier
        notifier = Notifier(store, runtime.state, asyncio.get_running_loop())
        store.notifier = notifier
    with runtime.state.lock:
        runtime.state.on_change.append(notifier.on_change)
    return notifier


def render(sub: Subscription, base: str) -> dict[str, Any]:
    return {
        "@odata.context": f"{base}/$metadata#subscriptions/$entity",
        "id": sub.id,
        "resource": sub.resource,
        "applicationId": sub.client_id,
        "changeType": ",".join(sub.change_types),
        "clientState": sub.client_state,
        "notificationUrl": sub.notification_url,
        "notificationQueryOptions": None,
        "lifecycleNotificationUrl": sub.lifecycle_notification_url,
        "expirationDateTime": graph_time(sub.expires_at),
        "creatorId": sub.creator_id,
        "includeResourceData": None,
        "latestSupportedTlsVersion": sub.latest_supported_tls_version,
        "encryptionCertificate": None,
        "encryptionCertificateId": None,
        "notificationUrlAppId": None,
        "notificationContentType": "application/json",
    }


async def _json_body(request: Request) -> dict[str, Any]:
    raw = await request.body()
    if "application/json" not in request.headers.get("content-type", "").casefold():
        raise errors.bad_json()
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.bad_json() from exc
    if not isinstance(body, dict):
        raise errors.bad_json()
    for name in body:
        if name not in PROPERTIES:
            raise errors.unknown_property(name, "microsoft.graph.subscription")
    return body


def _string(body: dict[str, Any], name: str) -> str | None:
    value = body.get(name)
    if value is not None and not isinstance(value, str):
        raise errors.bad_literal(value, "Edm.String")
    return value


def _url(value: str | None, name: str) -> str:
    # Graph requires https; the sandbox also accepts plain http on loopback for local receivers.
    if not value:
        raise invalid(f"{name} is a required property for subscription creation.")
    parts = urlsplit(value)
    loopback = parts.scheme == "http" and (parts.hostname or "") in LOOPBACK
    if not (parts.scheme == "https" and parts.hostname) and not loopback:
        raise invalid(f"The {name} must be a valid HTTPS URL.")
    return value


def _expiry(body: dict[str, Any], now: datetime) -> datetime:
    raw = _string(body, "expirationDateTime")
    if raw is None:
        raise invalid("expirationDateTime is a required property for subscription creation.")
    try:
        requested = datetime.fromisoformat(raw)
    except ValueError as exc:
        raise errors.bad_literal(raw, "Edm.DateTimeOffset") from exc
    if requested.tzinfo is None:
        requested = requested.replace(tzinfo=UTC)  # Graph reads a zone-less value as UTC
    if requested > now + MAX_LIFETIME:
        # Graph refuses rather than shortens, on create and on renew, in these words (seen
        # with the older 4,230-minute limit).
        minutes = int(MAX_LIFETIME.total_seconds() // 60)
        raise GraphError(
            400,
            "ExtensionError",
            f"Subscription expiration can only be {minutes} minutes in the future.",
        )
    return max(requested, now + MIN_LIFETIME)


def _change_types(raw: str | None) -> tuple[str, ...]:
    if not raw:
        raise invalid("changeType is a required property for subscription creation.")
    parts = [p.strip() for p in raw.split(",")]
    if any(p not in CHANGE_TYPES for p in parts):
        raise invalid(f"'{raw}' is not a valid change type. Valid values: created,updated,deleted.")
    return tuple(t for t in CHANGE_TYPES if t in parts)


def _check_access(runtime: Runtime, token: Token, user_ref: str) -> User:
    """The same checks as a calendar call: consent, user, access policy, mailbox."""
    if not token.roles & SUBSCRIBE_ROLES:
        raise errors.access_denied()
    state = runtime.state
    with state.lock:
        tenant = state.tenants[token.tenant_id]
        user = tenant.find_user(user_ref)
        if user is None:
            shown = user_ref if "@" in user_ref else f"{user_ref}@{tenant.id}"
            raise errors.invalid_user(shown)
        if (token.client_id, user.id) in tenant.blocked:
            raise errors.policy_blocked()
        if not user.has_mailbox:
            raise errors.mailbox_not_enabled()
        return user


def _owned(runtime: Runtime, token: Token, sub_id: str) -> Subscription:
    sub = runtime.subscriptions.get(sub_id, runtime.state.clock.now())
    if sub is None or sub.client_id != token.client_id or sub.tenant_id != token.tenant_id:
        raise not_found()
    return sub


@router.post("/v1.0/subscriptions", status_code=201)
async def create_subscription(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    token = authenticate(request)
    body = await _json_body(request)
    resource = _string(body, "resource")
    if not resource:
        raise invalid("resource is a required property for subscription creation.")
    if _ME.match(resource):
        raise GraphError(
            400, "BadRequest", "/me request is only valid with delegated authentication flow."
        )
    match = _RESOURCE.match(resource)
    if match is None:
        raise invalid(f"The sandbox supports only users/{{id}}/events, not '{resource}'.")
    user = _check_access(runtime, token, match.group(1))
    change_types = _change_types(_string(body, "changeType"))
    notification_url = _url(_string(body, "notificationUrl"), "notificationUrl")
    lifecycle_raw = _string(body, "lifecycleNotificationUrl")
    lifecycle_url = _url(lifecycle_raw, "lifecycleNotificationUrl") if lifecycle_raw else None
    client_state = _string(body, "clientState")
    if client_state is not None and len(client_state) > MAX_CLIENT_STATE:
        raise invalid(f"clientState must not be longer than {MAX_CLIENT_STATE} characters.")
    tls = _string(body, "latestSupportedTlsVersion") or "v1_2"
    if tls not in TLS_VERSIONS:
        raise invalid(f"'{tls}' is not a valid latestSupportedTlsVersion.")
    if body.get("includeResourceData"):
        raise invalid("The sandbox does not emulate rich notifications (includeResourceData).")
    expires_at = _expiry(body, runtime.state.clock.now())

    store = runtime.subscriptions

    def conflict() -> None:
        # §1.1: same changeType and resource → 409; scoped to the app, since apps are separate.
        for other in store.for_user(user.id, runtime.state.clock.now()):
            if other.client_id == token.client_id and other.change_types == change_types:
                raise GraphError(
                    409,
                    "Conflict",
                    f"Subscription Id {other.id} already exists for the requested combination",
                )

    conflict()
    if len(store.for_user(user.id, runtime.state.clock.now())) >= store.quota:
        raise GraphError(
            403,
            "quotaLimitReached",
            f"The mailbox has reached its limit of {store.quota} active subscriptions.",
        )
    notifier = ensure_notifier(runtime)
    for url in (notification_url, lifecycle_url):
        if url is not None:
            problem = await notifier.validate(url)
            if problem is not None:
                raise GraphError(400, "ValidationError", problem)
    sub = Subscription(
        id=str(uuid.uuid4()),
        tenant_id=token.tenant_id,
        client_id=token.client_id,
        # App-only: the creator is the app's service principal, stable per app and tenant.
        creator_id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"sp:{token.tenant_id}:{token.client_id}")),
        user_id=user.id,
        resource=resource,
        change_types=change_types,
        notification_url=notification_url,
        lifecycle_notification_url=lifecycle_url,
        client_state=client_state,
        expires_at=expires_at,
        latest_supported_tls_version=tls,
        immutable_ids=_wants_immutable_ids(request),
    )
    notifier.remember_mailbox(user.id)
    with store.lock:
        conflict()  # a concurrent create may have won while the handshake ran
        store.add(sub)
    return graph_response(render(sub, graph_base(request)), status=201)


def _wants_immutable_ids(request: Request) -> bool:
    prefer = ",".join(request.headers.getlist("prefer")).casefold().replace(" ", "")
    return 'idtype="immutableid"' in prefer


@router.get("/v1.0/subscriptions")
async def list_subscriptions(request: Request) -> JSONResponse:
    runtime = runtime_of(request)
    token = authenticate(request)
    base = graph_base(request)
    mine = [
        s
        for s in runtime.subscriptions.all(runtime.state.clock.now())
        if s.client_id == token.client_id and s.tenant_id == token.tenant_id
    ]
    value = [{k: v for k, v in render(s, base).items() if k != "@odata.context"} for s in mine]
    return graph_response({"@odata.context": f"{base}/$metadata#subscriptions", "value": value})


@router.get("/v1.0/subscriptions/{sub_id}")
async def get_subscription(request: Request, sub_id: str) -> JSONResponse:
    runtime = runtime_of(request)
    sub = _owned(runtime, authenticate(request), sub_id)
    return graph_response(render(sub, graph_base(request)))


@router.patch("/v1.0/subscriptions/{sub_id}")
async def update_subscription(request: Request, sub_id: str) -> JSONResponse:
    runtime = runtime_of(request)
    token = authenticate(request)
    sub = _owned(runtime, token, sub_id)
    body = await _json_body(request)
    if "lifecycleNotificationUrl" in body:
        # §1.1: it can't be added (or changed) later; the subscription must be recreated.
        raise invalid("lifecycleNotificationUrl can't be updated; create a new subscription.")
    if body.get("expirationDateTime") is None and body.get("notificationUrl") is None:
        raise invalid(
            "Subscription must contain either the 'expirationDateTime' or 'notificationUrl'"
            " property and its value."
        )
    _check_access(runtime, token, sub.user_id)
    now = runtime.state.clock.now()
    expires_at = _expiry(body, now) if body.get("expirationDateTime") is not None else None
    new_url = body.get("notificationUrl")
    if new_url is not None:
        new_url = _url(_string(body, "notificationUrl"), "notificationUrl")
        problem = await ensure_notifier(runtime).validate(new_url)
        if problem is not None:
            raise GraphError(400, "ValidationError", problem)
    with runtime.subscriptions.lock:
        if expires_at is not None:
            sub.expires_at = expires_at
        if new_url is not None:
            sub.notification_url = new_url
        sub.suspended = False  # §1.5: a PATCH both renews and reauthorizes
    return graph_response(render(sub, graph_base(request)))


@router.post("/v1.0/subscriptions/{sub_id}/reauthorize", status_code=204)
async def reauthorize_subscription(request: Request, sub_id: str) -> Response:
    runtime = runtime_of(request)
    token = authenticate(request)
    sub = _owned(runtime, token, sub_id)
    _check_access(runtime, token, sub.user_id)  # reauthorizing needs the access still granted
    with runtime.subscriptions.lock:
        sub.suspended = False
    return Response(status_code=204)


@router.delete("/v1.0/subscriptions/{sub_id}", status_code=204)
async def delete_subscription(request: Request, sub_id: str) -> Response:
    runtime = runtime_of(request)
    sub = _owned(runtime, authenticate(request), sub_id)
    runtime.subscriptions.remove(sub.id)
    return Response(status_code=204)
