"""The control API over HTTP, under `/_sandbox`: thin routes over `Control`, for whoever drives
a sandbox running in another process (`calbridge sandbox` under a benchmark, say)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from app.sandbox.bookingtime import control_router as bookingtime_control
from app.sandbox.control import Control
from app.sandbox.faults import FaultKind, FaultRule
from app.sandbox.subscription_store import LifecycleEvent, Subscription

router = APIRouter(prefix="/_sandbox", tags=["sandbox control"])


def _control(request: Request) -> Control:
    control: Control = request.app.state.control
    return control


class TenantIn(BaseModel):
    domains: list[str]
    tenant_id: str | None = None


class AppIn(BaseModel):
    client_id: str | None = None
    secret: str | None = None
    secret_expires_at: datetime | None = None
    consent: bool = True


class UserIn(BaseModel):
    user_principal_name: str
    mailbox: bool = True
    display_name: str | None = None


class ConsentIn(BaseModel):
    granted: bool


class PolicyIn(BaseModel):
    client_id: str
    user: str
    blocked: bool = True


class AdvanceIn(BaseModel):
    seconds: float


class FaultIn(BaseModel):
    kind: FaultKind
    rate: float = 1.0
    count: int | None = None
    path: str | None = None
    mailbox: str | None = None
    seconds: float = 0.0
    retry_after: str | None = None


class SeedIn(BaseModel):
    seed: int


class LifecycleIn(BaseModel):
    event: LifecycleEvent
    suspend: bool = False


def _missing(exc: KeyError) -> HTTPException:
    return HTTPException(404, detail=str(exc.args[0]) if exc.args else "not found")


@router.post("/tenants", status_code=201, summary="Add a tenant (its domains, optionally its id)")
async def http_add_tenant(request: Request, body: TenantIn) -> dict[str, Any]:
    tenant = _control(request).add_tenant(*body.domains, tenant_id=body.tenant_id)
    return {"tenant_id": tenant.id, "domains": tenant.domains}


@router.post(
    "/tenants/{tenant_id}/apps",
    status_code=201,
    summary="Register an app in a tenant: client id, secret and its expiry, admin consent",
)
async def http_add_app(request: Request, tenant_id: str, body: AppIn) -> dict[str, Any]:
    try:
        app, secret = _control(request).add_app(
            tenant_id,
            client_id=body.client_id,
            secret=body.secret,
            secret_expires_at=body.secret_expires_at,
            consent=body.consent,
        )
    except KeyError as exc:
        raise _missing(exc) from exc
    return {"client_id": app.client_id, "client_secret": secret, "roles": sorted(app.roles)}


@router.post(
    "/tenants/{tenant_id}/users",
    status_code=201,
    summary="Add a user (with a mailbox unless told otherwise)",
)
async def http_add_user(request: Request, tenant_id: str, body: UserIn) -> dict[str, Any]:
    try:
        user = _control(request).add_user(
            tenant_id,
            body.user_principal_name,
            mailbox=body.mailbox,
            display_name=body.display_name,
        )
    except KeyError as exc:
        raise _missing(exc) from exc
    return {
        "id": user.id,
        "userPrincipalName": user.user_principal_name,
        "mailbox": user.has_mailbox,
    }


@router.put("/apps/{client_id}/consent", summary="Grant or revoke an app's admin consent")
async def http_consent(request: Request, client_id: str, body: ConsentIn) -> dict[str, Any]:
    try:
        _control(request).set_consent(client_id, body.granted)
    except KeyError as exc:
        raise _missing(exc) from exc
    return {"client_id": client_id, "granted": body.granted}


@router.post(
    "/policies", summary="Block (or unblock) an app from one mailbox, like an access policy"
)
async def http_policy(request: Request, body: PolicyIn) -> dict[str, Any]:
    try:
        _control(request).block(body.client_id, body.user, blocked=body.blocked)
    except KeyError as exc:
        raise _missing(exc) from exc
    return body.model_dump()


@router.post("/clock/advance", summary="Move the sandbox's clock forward")
async def http_advance(request: Request, body: AdvanceIn) -> dict[str, str]:
    now = _control(request).clock.advance(timedelta(seconds=body.seconds))
    return {"now": now.isoformat()}


@router.get("/clock", summary="The sandbox's clock")
async def http_clock(request: Request) -> dict[str, str]:
    return {"now": _control(request).clock.now().isoformat()}


@router.get("/stats", summary="Token requests served and requests throttled so far")
async def http_stats(request: Request) -> dict[str, Any]:
    control = _control(request)
    return {"token_requests": control.token_requests, "throttled": control.throttle.rejected}


@router.get("/writes", summary="The event writes served, each stamped with time.monotonic()")
async def http_writes(
    request: Request,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int | None, Query(ge=1)] = None,
) -> dict[str, Any]:
    page = _control(request).writes(after=after, limit=limit)
    return {
        "writes": [write.as_json() for write in page.writes],
        "last_sequence": page.last_sequence,
        "dropped": page.dropped,
    }


@router.delete("/writes", status_code=204, summary="Forget the write log")
async def http_clear_writes(request: Request) -> None:
    _control(request).clear_writes()


@router.get("/mailboxes/{user_ref}/events", summary="A mailbox's events, as stored")
async def http_events(request: Request, user_ref: str) -> list[dict[str, Any]]:
    try:
        return _control(request).events(user_ref)
    except KeyError as exc:
        raise _missing(exc) from exc


@router.post(
    "/mailboxes/{user_ref}/events",
    status_code=201,
    summary="Create an event as a person in Outlook would",
)
async def http_outlook_create(request: Request, user_ref: str) -> dict[str, str]:
    try:
        return {"id": _control(request).outlook_create(user_ref, await request.json())}
    except KeyError as exc:
        raise _missing(exc) from exc


@router.patch(
    "/mailboxes/{user_ref}/events/{event_id}", summary="Edit an event as a person in Outlook would"
)
async def http_outlook_edit(request: Request, user_ref: str, event_id: str) -> dict[str, str]:
    try:
        change_key = _control(request).outlook_edit(user_ref, event_id, await request.json())
    except KeyError as exc:
        raise _missing(exc) from exc
    return {"changeKey": change_key}


@router.post(
    "/mailboxes/{user_ref}/events/{event_id}/move",
    summary="Move an event as a person in Outlook would",
)
async def http_outlook_move(request: Request, user_ref: str, event_id: str) -> dict[str, str]:
    try:
        return {"restId": _control(request).outlook_move(user_ref, event_id)}
    except KeyError as exc:
        raise _missing(exc) from exc


@router.delete(
    "/mailboxes/{user_ref}/events/{event_id}",
    status_code=204,
    summary="Delete an event as a person in Outlook would",
)
async def http_outlook_delete(request: Request, user_ref: str, event_id: str) -> None:
    try:
        _control(request).outlook_delete(user_ref, event_id)
    except KeyError as exc:
        raise _missing(exc) from exc


def _rule_out(rule: FaultRule) -> dict[str, Any]:
    return {
        "id": rule.id,
        "kind": rule.kind,
        "rate": rule.rate,
        "remaining": rule.remaining,
        "path": rule.path,
        "mailbox": rule.mailbox,
        "seconds": rule.seconds,
        "retry_after": rule.retry_after,
        "fired": rule.fired,
    }


@router.post(
    "/faults",
    status_code=201,
    summary="Inject a fault (latency, 429, 500, 503, 504, html500, truncated, drop, timeout),"
    " by path or mailbox",
)
async def http_add_fault(request: Request, body: FaultIn) -> dict[str, Any]:
    if body.kind == "hold":
        raise HTTPException(400, detail="holds are released from Python; use latency over HTTP")
    try:
        rule = _control(request).faults.add(
            body.kind,
            rate=body.rate,
            count=body.count,
            path=body.path,
            mailbox=body.mailbox,
            seconds=body.seconds,
            retry_after=body.retry_after,
        )
    except ValueError as exc:
        raise HTTPException(400, detail=str(exc)) from exc
    return _rule_out(rule)


@router.get("/faults", summary="The faults in force")
async def http_faults(request: Request) -> list[dict[str, Any]]:
    return [_rule_out(rule) for rule in _control(request).faults.rules()]


@router.delete("/faults", status_code=204, summary="Remove every fault")
async def http_clear_faults(request: Request) -> None:
    _control(request).faults.clear()


@router.post(
    "/faults/seed", status_code=204, summary="Seed the random choice of faults, for repeatable runs"
)
async def http_seed_faults(request: Request, body: SeedIn) -> None:
    _control(request).faults.seed(body.seed)


def _subscription_out(sub: Subscription) -> dict[str, Any]:
    return {
        "id": sub.id,
        "tenant_id": sub.tenant_id,
        "client_id": sub.client_id,
        "user_id": sub.user_id,
        "resource": sub.resource,
        "change_types": list(sub.change_types),
        "notification_url": sub.notification_url,
        "lifecycle_notification_url": sub.lifecycle_notification_url,
        "client_state": sub.client_state,
        "expires_at": sub.expires_at.isoformat(),
        "suspended": sub.suspended,
    }


@router.get("/subscriptions", summary="Every change-notification subscription")
async def http_subscriptions(request: Request) -> list[dict[str, Any]]:
    return [_subscription_out(sub) for sub in _control(request).subscriptions()]


@router.post(
    "/subscriptions/{sub_id}/expire", status_code=204, summary="Let a subscription expire now"
)
async def http_expire_subscription(request: Request, sub_id: str) -> None:
    try:
        _control(request).expire_subscription(sub_id)
    except KeyError as exc:
        raise _missing(exc) from exc


@router.post(
    "/subscriptions/{sub_id}/lifecycle",
    status_code=202,
    summary="Send a lifecycle notification for a subscription",
)
async def http_fire_lifecycle(request: Request, sub_id: str, body: LifecycleIn) -> dict[str, Any]:
    try:
        _control(request).fire_lifecycle(sub_id, body.event, suspend=body.suspend)
    except KeyError as exc:
        raise _missing(exc) from exc
    except (ValueError, RuntimeError) as exc:
        raise HTTPException(409, detail=str(exc)) from exc
    return {"subscription": sub_id, "event": body.event}


@router.get("/deliveries", summary="The notifications delivered, with their answers")
async def http_deliveries(request: Request) -> list[dict[str, Any]]:
    return [
        {
            "kind": d.kind,
            "url": d.url,
            "body": d.body,
            "attempt": d.attempt,
            "status": d.status,
            "error": d.error,
            "elapsed": d.elapsed,
            "slow": d.slow,
            "final": d.final,
        }
        for d in _control(request).deliveries()
    ]


@router.delete("/deliveries", status_code=204, summary="Forget the delivery log")
async def http_clear_deliveries(request: Request) -> None:
    _control(request).clear_deliveries()


@router.post("/delivery/pause", status_code=204, summary="Hold notifications back (they queue)")
async def http_pause_delivery(request: Request) -> None:
    _control(request).pause_delivery()


@router.post("/delivery/resume", status_code=204, summary="Deliver the held notifications")
async def http_resume_delivery(request: Request) -> None:
    _control(request).resume_delivery()


# bookingtime's control routes belong to this one control API: its routes, so its document.
router.routes.extend(bookingtime_control.router.routes)
