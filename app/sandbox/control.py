"""The control API: set up tenants, apps and users, move the clock, inspect mailboxes, act as a
person in Outlook, inject faults. The same operations are served over HTTP under `/_sandbox`."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel

from app.sandbox.clock import Clock
from app.sandbox.event_model import (
    RenderOptions,
    apply_changes,
    bump,
    new_event,
    parse_changes,
    render_event,
)
from app.sandbox.faults import FaultKind, FaultRule, Faults
from app.sandbox.runtime import Runtime
from app.sandbox.state import (
    CALENDAR_WRITE,
    DEFAULT_ROLES,
    App,
    ClientSecret,
    Event,
    Mailbox,
    Tenant,
    User,
    new_rest_id,
)
from app.sandbox.subscription_store import (
    Delivery,
    DeliveryConfig,
    LifecycleEvent,
    Subscription,
)
from app.sandbox.throttle import Throttle
from app.sandbox.write_log import WritePage

SECRET_LIFETIME = timedelta(days=730)


@dataclass(frozen=True)
class DemoSetup:
    tenant_id: str
    domain: str
    client_id: str
    client_secret: str
    mailboxes: tuple[str, ...]


class Control:
    """Python handle on a running sandbox; thread-safe, so tests call it from their own thread."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime

    @property
    def clock(self) -> Clock:
        return self._runtime.state.clock

    @property
    def faults(self) -> Faults:
        return self._runtime.faults

    @property
    def throttle(self) -> Throttle:
        return self._runtime.throttle

    @property
    def token_requests(self) -> int:
        return self._runtime.state.token_requests

    def set_token_lifetime(self, lifetime: timedelta) -> None:
        self._runtime.state.token_lifetime = lifetime

    # Directory -------------------------------------------------------------------------------
    def add_tenant(self, *domains: str, tenant_id: str | None = None) -> Tenant:
        state = self._runtime.state
        tenant = Tenant(id=(tenant_id or str(uuid.uuid4())).lower(), domains=list(domains))
        with state.lock:
            state.tenants[tenant.id] = tenant
        return tenant

    def add_app(
        self,
        tenant_id: str,
        *,
        client_id: str | None = None,
        secret: str | None = None,
        secret_expires_at: datetime | None = None,
        consent: bool = True,
        roles: set[str] | None = None,
        display_name: str = "calbridge",
    ) -> tuple[App, str]:
        """Register an app with one client secret; returns the app and the secret's value."""
        state = self._runtime.state
        value = secret or secrets.token_urlsafe(30)
        expires_at = secret_expires_at or state.clock.now() + SECRET_LIFETIME
        granted = set(roles if roles is not None else DEFAULT_ROLES)
        if not consent:
            granted -= {CALENDAR_WRITE, "Calendars.Read", "Calendars.ReadBasic"}
        app = App(
            client_id=client_id or str(uuid.uuid4()),
            tenant_id=tenant_id,
            display_name=display_name,
            secrets=[ClientSecret(value, expires_at)],
            roles=granted,
        )
        with state.lock:
            state.tenants[tenant_id].apps[app.client_id] = app
        return app, value

    def add_secret(self, client_id: str, *, expires_at: datetime, value: str | None = None) -> str:
        value = value or secrets.token_urlsafe(30)
        with self._runtime.state.lock:
            self._app(client_id).secrets.append(ClientSecret(value, expires_at))
        return value

    def set_consent(self, client_id: str, granted: bool) -> None:
        """Grant or revoke admin consent for Calendars.ReadWrite (later tokens reflect it)."""
        with self._runtime.state.lock:
            roles = self._app(client_id).roles
            if granted:
                roles.add(CALENDAR_WRITE)
            else:
                roles.difference_update({CALENDAR_WRITE, "Calendars.Read", "Calendars.ReadBasic"})

    def add_user(
        self,
        tenant_id: str,
        user_principal_name: str,
        *,
        mailbox: bool = True,
        display_name: str | None = None,
        user_id: str | None = None,
    ) -> User:
        state = self._runtime.state
        name = display_name or user_principal_name.split("@")[0].replace(".", " ").title()
        user = User(
            id=(user_id or str(uuid.uuid4())).lower(),
            tenant_id=tenant_id,
            user_principal_name=user_principal_name,
            display_name=name,
            has_mailbox=mailbox,
        )
        with state.lock:
            state.tenants[tenant_id].users[user.id] = user
            if mailbox:
                state.mailboxes[user.id] = Mailbox(user.id)
        return user

    def block(self, client_id: str, user_ref: str, *, blocked: bool = True) -> None:
        """An application access policy (RestrictAccess) keeping the app out of this mailbox."""
        with self._runtime.state.lock:
            user = self._user(user_ref)
            pair = (client_id, user.id)
            tenant = self._runtime.state.tenants[user.tenant_id]
            if blocked:
                tenant.blocked.add(pair)
            else:
                tenant.blocked.discard(pair)

    def seed_demo(self) -> DemoSetup:
        """A ready tenant, app and two mailboxes with stable ids, for the CLI and the demo."""
        tenant_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, "tenant.contoso.example"))
        domain = "contoso.example"
        client_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, "calbridge.contoso.example"))
        secret = "sandbox-secret-" + uuid.uuid5(uuid.NAMESPACE_DNS, "secret.contoso.example").hex
        if self._runtime.state.find_tenant(tenant_id) is None:
            self.add_tenant(domain, tenant_id=tenant_id)
            self.add_app(tenant_id, client_id=client_id, secret=secret)
            for name in ("max", "erika"):
                upn = f"{name}@{domain}"
                uid = str(uuid.uuid5(uuid.NAMESPACE_DNS, upn))
                self.add_user(tenant_id, upn, user_id=uid)
        return DemoSetup(
            tenant_id, domain, client_id, secret, ("max@contoso.example", "erika@contoso.example")
        )

    # Mailboxes -------------------------------------------------------------------------------
    def events(self, user_ref: str) -> list[dict[str, Any]]:
        """Every event in the mailbox as Graph renders it (UTC, immutable ids), plus its
        extended properties, which Graph itself only shows on request."""
        with self._runtime.state.lock:
            user = self._user(user_ref)
            mailbox = self._runtime.state.mailboxes.get(user.id, Mailbox(user.id))
            result = []
            for event in mailbox.events.values():
                rendered = render_event(
                    event,
                    user,
                    RenderOptions(immutable_ids=True, expand_extended=tuple(event.extended)),
                )
                rendered["restId"] = event.rest_id
                result.append(rendered)
            return result

    def outlook_create(self, user_ref: str, body: dict[str, Any]) -> str:
        """A person creates an event in Outlook; returns its immutable id."""
        state = self._runtime.state
        with state.lock:
            mailbox = self._mailbox(user_ref)
            event = new_event(parse_changes(body), state.clock.now())
            mailbox.events[event.immutable_id] = event
            state.record_change("created", mailbox.user_id, event.immutable_id)
            return event.immutable_id

    def outlook_edit(self, user_ref: str, event_id: str, changes: dict[str, Any]) -> str:
        """A person edits an event in Outlook; returns the new changeKey."""
        state = self._runtime.state
        with state.lock:
            mailbox = self._mailbox(user_ref)
            event = self._event(mailbox, event_id)
            apply_changes(event, parse_changes(changes), state.clock.now())
            state.record_change("updated", mailbox.user_id, event.immutable_id)
            return event.change_key

    def outlook_move(self, user_ref: str, event_id: str) -> str:
        """A person moves the event to another folder and back: the REST id changes, the
        immutable id does not. Returns the new REST id."""
        state = self._runtime.state
        with state.lock:
            mailbox = self._mailbox(user_ref)
            event = self._event(mailbox, event_id)
            event.rest_id = new_rest_id()
            bump(event, state.clock.now())
            state.record_change("updated", mailbox.user_id, event.immutable_id)
            return event.rest_id

    def outlook_delete(self, user_ref: str, event_id: str) -> None:
        state = self._runtime.state
        with state.lock:
            mailbox = self._mailbox(user_ref)
            event = self._event(mailbox, event_id)
            del mailbox.events[event.immutable_id]
            state.record_change("deleted", mailbox.user_id, event.immutable_id)

    # Write log ---------------------------------------------------------------------------------
    def writes(self, *, after: int = 0, limit: int | None = None) -> WritePage:
        """Event creates, updates and deletes logged after sequence `after`, oldest first, each
        with its server time and the transactionId and extended properties of the event."""
        return self._runtime.writes.page(after=after, limit=limit)

    def clear_writes(self) -> None:
        self._runtime.writes.clear()

    # Subscriptions and delivery -----------------------------------------------------------
    @property
    def delivery_config(self) -> DeliveryConfig:
        """Batch window, retry delays, timeouts, extra CA; change it before the traffic."""
        return self._runtime.subscriptions.config

    def subscriptions(self) -> list[Subscription]:
        """Every live subscription of every app (expired ones are gone)."""
        return self._runtime.subscriptions.all(self.clock.now())

    def expire_subscription(self, sub_id: str) -> None:
        """Let the subscription run out now, without moving the clock for everything else."""
        store = self._runtime.subscriptions
        with store.lock:
            self._subscription(sub_id).expires_at = self.clock.now()
            store.purge(self.clock.now())

    def fire_lifecycle(self, sub_id: str, event: LifecycleEvent, *, suspend: bool = False) -> None:
        """Send a lifecycle notification to the subscription's lifecycleNotificationUrl.
        `subscriptionRemoved` deletes the subscription; `reauthorizationRequired` with
        `suspend` also stops its change notifications (lost, as in Graph) until the client
        reauthorizes or renews."""
        store = self._runtime.subscriptions
        with store.lock:
            sub = self._subscription(sub_id)
            if store.notifier is None:
                raise RuntimeError("delivery has not started")
            if event == "subscriptionRemoved":
                store.remove(sub.id)
            elif event == "reauthorizationRequired" and suspend:
                sub.suspended = True
            store.notifier.fire_lifecycle(sub, event)

    def deliveries(self) -> list[Delivery]:
        """Every attempt to reach a client endpoint (handshakes too), oldest first."""
        return self._runtime.subscriptions.log.items()

    def clear_deliveries(self) -> None:
        self._runtime.subscriptions.log.clear()

    def wait_deliveries(
        self, count: int, *, kind: str = "notification", final: bool = True, timeout: float = 5.0
    ) -> list[Delivery]:
        """Block until `count` attempts of `kind` are logged (only finished ones if `final`);
        raises TimeoutError otherwise. From async code: `await asyncio.to_thread(...)`."""

        def matching(items: list[Delivery]) -> list[Delivery]:
            return [d for d in items if d.kind == kind and (d.final or not final)]

        log = self._runtime.subscriptions.log
        if not log.wait_for(lambda items: len(matching(items)) >= count, timeout):
            raise TimeoutError(f"{count} {kind} deliveries: got {matching(log.items())}")
        return matching(log.items())

    def pause_delivery(self) -> None:
        """Hold every delivery (queued, not lost) until `resume_delivery`."""
        store = self._runtime.subscriptions
        with store.lock:
            store.paused = True
            if store.notifier is not None:
                store.notifier.set_paused(True)

    def resume_delivery(self) -> None:
        store = self._runtime.subscriptions
        with store.lock:
            store.paused = False
            if store.notifier is not None:
                store.notifier.set_paused(False)

    # Lookups ---------------------------------------------------------------------------------
    def _subscription(self, sub_id: str) -> Subscription:
        sub = self._runtime.subscriptions.get(sub_id, self.clock.now())
        if sub is None:
            raise KeyError(f"no subscription {sub_id}")
        return sub

    def _app(self, client_id: str) -> App:
        app = self._runtime.state.find_app(client_id)
        if app is None:
            raise KeyError(f"no app {client_id}")
        return app

    def _user(self, user_ref: str) -> User:
        user = self._runtime.state.find_user_anywhere(user_ref)
        if user is None:
            raise KeyError(f"no user {user_ref}")
        return user

    def _mailbox(self, user_ref: str) -> Mailbox:
        user = self._user(user_ref)
        mailbox = self._runtime.state.mailboxes.get(user.id)
        if mailbox is None:
            raise KeyError(f"{user_ref} has no mailbox")
        return mailbox

    def _event(self, mailbox: Mailbox, event_id: str) -> Event:
        event = mailbox.find(event_id)
        if event is None:
            raise KeyError(f"no event {event_id}")
        return event


# HTTP ----------------------------------------------------------------------------------------
router = APIRouter(prefix="/_sandbox")


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


@router.post("/tenants", status_code=201)
async def http_add_tenant(request: Request, body: TenantIn) -> dict[str, Any]:
    tenant = _control(request).add_tenant(*body.domains, tenant_id=body.tenant_id)
    return {"tenant_id": tenant.id, "domains": tenant.domains}


@router.post("/tenants/{tenant_id}/apps", status_code=201)
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


@router.post("/tenants/{tenant_id}/users", status_code=201)
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


@router.put("/apps/{client_id}/consent")
async def http_consent(request: Request, client_id: str, body: ConsentIn) -> dict[str, Any]:
    try:
        _control(request).set_consent(client_id, body.granted)
    except KeyError as exc:
        raise _missing(exc) from exc
    return {"client_id": client_id, "granted": body.granted}


@router.post("/policies")
async def http_policy(request: Request, body: PolicyIn) -> dict[str, Any]:
    try:
        _control(request).block(body.client_id, body.user, blocked=body.blocked)
    except KeyError as exc:
        raise _missing(exc) from exc
    return body.model_dump()


@router.post("/clock/advance")
async def http_advance(request: Request, body: AdvanceIn) -> dict[str, str]:
    now = _control(request).clock.advance(timedelta(seconds=body.seconds))
    return {"now": now.isoformat()}


@router.get("/clock")
async def http_clock(request: Request) -> dict[str, str]:
    return {"now": _control(request).clock.now().isoformat()}


@router.get("/stats")
async def http_stats(request: Request) -> dict[str, Any]:
    control = _control(request)
    return {"token_requests": control.token_requests, "throttled": control.throttle.rejected}


@router.get("/writes")
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


@router.delete("/writes", status_code=204)
async def http_clear_writes(request: Request) -> None:
    _control(request).clear_writes()


@router.get("/mailboxes/{user_ref}/events")
async def http_events(request: Request, user_ref: str) -> list[dict[str, Any]]:
    try:
        return _control(request).events(user_ref)
    except KeyError as exc:
        raise _missing(exc) from exc


@router.post("/mailboxes/{user_ref}/events", status_code=201)
async def http_outlook_create(request: Request, user_ref: str) -> dict[str, str]:
    try:
        return {"id": _control(request).outlook_create(user_ref, await request.json())}
    except KeyError as exc:
        raise _missing(exc) from exc


@router.patch("/mailboxes/{user_ref}/events/{event_id}")
async def http_outlook_edit(request: Request, user_ref: str, event_id: str) -> dict[str, str]:
    try:
        change_key = _control(request).outlook_edit(user_ref, event_id, await request.json())
    except KeyError as exc:
        raise _missing(exc) from exc
    return {"changeKey": change_key}


@router.post("/mailboxes/{user_ref}/events/{event_id}/move")
async def http_outlook_move(request: Request, user_ref: str, event_id: str) -> dict[str, str]:
    try:
        return {"restId": _control(request).outlook_move(user_ref, event_id)}
    except KeyError as exc:
        raise _missing(exc) from exc


@router.delete("/mailboxes/{user_ref}/events/{event_id}", status_code=204)
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


@router.post("/faults", status_code=201)
async def http_add_fault(request: Request, body: FaultIn) -> dict[str, Any]:
    if body.kind == "hold":
        raise HTTPException(400, detail="holds are released from Python; use latency over HTTP")
    rule = _control(request).faults.add(
        body.kind,
        rate=body.rate,
        count=body.count,
        path=body.path,
        mailbox=body.mailbox,
        seconds=body.seconds,
        retry_after=body.retry_after,
    )
    return _rule_out(rule)


@router.get("/faults")
async def http_faults(request: Request) -> list[dict[str, Any]]:
    return [_rule_out(rule) for rule in _control(request).faults.rules()]


@router.delete("/faults", status_code=204)
async def http_clear_faults(request: Request) -> None:
    _control(request).faults.clear()


@router.post("/faults/seed", status_code=204)
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


@router.get("/subscriptions")
async def http_subscriptions(request: Request) -> list[dict[str, Any]]:
    return [_subscription_out(sub) for sub in _control(request).subscriptions()]


@router.post("/subscriptions/{sub_id}/expire", status_code=204)
async def http_expire_subscription(request: Request, sub_id: str) -> None:
    try:
        _control(request).expire_subscription(sub_id)
    except KeyError as exc:
        raise _missing(exc) from exc


@router.post("/subscriptions/{sub_id}/lifecycle", status_code=202)
async def http_fire_lifecycle(request: Request, sub_id: str, body: LifecycleIn) -> dict[str, Any]:
    try:
        _control(request).fire_lifecycle(sub_id, body.event, suspend=body.suspend)
    except KeyError as exc:
        raise _missing(exc) from exc
    except (ValueError, RuntimeError) as exc:
        raise HTTPException(409, detail=str(exc)) from exc
    return {"subscription": sub_id, "event": body.event}


@router.get("/deliveries")
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


@router.delete("/deliveries", status_code=204)
async def http_clear_deliveries(request: Request) -> None:
    _control(request).clear_deliveries()


@router.post("/delivery/pause", status_code=204)
async def http_pause_delivery(request: Request) -> None:
    _control(request).pause_delivery()


@router.post("/delivery/resume", status_code=204)
async def http_resume_delivery(request: Request) -> None:
    _control(request).resume_delivery()
