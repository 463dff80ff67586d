"""The control API in Python: set up tenants, apps and users, move the clock, inspect mailboxes,
act as a person in Outlook, inject faults, steer notification delivery; `bookingtime` does the
same for the bookingtime emulator. `control_router.py` serves the same operations over HTTP
under `/_sandbox`."""

from __future__ import annotations

import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.sandbox.bookingtime.control import BookingtimeControl, BookingtimeDemo
from app.sandbox.clock import Clock
from app.sandbox.event_body import parse_changes
from app.sandbox.event_render import RenderOptions, render_event
from app.sandbox.event_writes import apply_changes, bump, new_event
from app.sandbox.faults import Faults
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
    bookingtime: BookingtimeDemo


class Control:
    """Python handle on a running sandbox; thread-safe, so tests call it from their own thread."""

    def __init__(self, runtime: Runtime) -> None:
        self._runtime = runtime
        self.bookingtime = BookingtimeControl(runtime.bookingtime)

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
        """A ready tenant, app and two mailboxes with stable ids, for the CLI and the demo, and
        their bookingtime counterparts: an app and an organisation with two booking resources."""
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
            tenant_id,
            domain,
            client_id,
            secret,
            ("max@contoso.example", "erika@contoso.example"),
            self.bookingtime.seed_demo(),
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
