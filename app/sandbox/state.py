"""Everything the sandbox knows: tenants, apps and secrets, users and their mailboxes, issued
tokens and the change log. One lock guards it, because tests mutate it from their own thread."""

from __future__ import annotations

import base64
import secrets
import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from app.sandbox.clock import Clock

CALENDAR_WRITE = "Calendars.ReadWrite"
CALENDAR_ROLES = frozenset({"Calendars.Read", "Calendars.ReadWrite", "Calendars.ReadBasic"})
USER_READ_ROLES = frozenset({"User.Read.All", "User.ReadBasic.All", "Directory.Read.All"})
DEFAULT_ROLES = frozenset({CALENDAR_WRITE, "User.Read.All"})
GRAPH_AUDIENCE = "https://graph.microsoft.com"

ChangeType = Literal["created", "updated", "deleted"]


@dataclass
class ClientSecret:
    value: str
    expires_at: datetime
    secret_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class App:
    client_id: str
    tenant_id: str
    display_name: str
    secrets: list[ClientSecret]
    # Application permissions an admin consented to; without Calendars.* calendar calls get 403.
    roles: set[str]


@dataclass
class User:
    id: str
    tenant_id: str
    user_principal_name: str
    display_name: str
    has_mailbox: bool


@dataclass
class Tenant:
    id: str
    domains: list[str]
    apps: dict[str, App] = field(default_factory=dict)
    users: dict[str, User] = field(default_factory=dict)
    # (client_id, user_id) pairs an application access policy keeps apart.
    blocked: set[tuple[str, str]] = field(default_factory=set)

    def find_user(self, ref: str) -> User | None:
        """By object id (GUID, any case) or by userPrincipalName (case-insensitive)."""
        folded = ref.casefold()
        for user in self.users.values():
            if user.id.casefold() == folded or user.user_principal_name.casefold() == folded:
                return user
        return None


@dataclass
class Token:
    value: str
    tenant_id: str
    client_id: str
    roles: frozenset[str]
    issued_at: datetime
    expires_at: datetime


@dataclass
class Event:
    """A stored event. `fields` holds Graph-shaped writable properties; times are UTC instants."""

    immutable_id: str
    rest_id: str
    change_key: str
    ical_uid: str
    created_at: datetime
    modified_at: datetime
    start: tuple[datetime, str] | None
    end: tuple[datetime, str] | None
    fields: dict[str, Any]
    extended: dict[str, str]
    transaction_id: str | None = None


@dataclass
class Mailbox:
    user_id: str
    events: dict[str, Event] = field(default_factory=dict)  # by immutable id

    def find(self, event_id: str) -> Event | None:
        # Both id forms address an item; a REST id that changed on a move no longer does.
        event = self.events.get(event_id)
        if event is not None:
            return event
        for candidate in self.events.values():
            if candidate.rest_id == event_id:
                return candidate
        return None


@dataclass(frozen=True)
class Change:
    """One entry in the change log: what delta and (later) subscriptions are fed from."""

    sequence: int
    change_type: ChangeType
    user_id: str
    event_id: str
    at: datetime


def new_change_key() -> str:
    return base64.b64encode(b"\x0f\x00\x00\x00\x16\x00\x00\x00" + secrets.token_bytes(16)).decode()


def new_rest_id() -> str:
    return "AAMkA" + base64.urlsafe_b64encode(secrets.token_bytes(105)).decode()


def new_immutable_id() -> str:
    return "AAkALg" + base64.urlsafe_b64encode(secrets.token_bytes(105)).decode()


def new_ical_uid() -> str:
    return "040000008200E00074C5B7101A82E00800000000" + secrets.token_hex(36).upper()


class SandboxState:
    """The in-memory directory and mailboxes. Take `lock` around any read-modify-write."""

    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock or Clock()
        self.lock = threading.RLock()
        self.tenants: dict[str, Tenant] = {}
        self.mailboxes: dict[str, Mailbox] = {}
        self.tokens: dict[str, Token] = {}
        self.token_lifetime = timedelta(seconds=3599)
        self.token_requests = 0
        self.changes: list[Change] = []
        # Called under `lock` right after a change is logged (subscriptions feed on it); a
        # listener must not block, since the writer may be a request on the server's loop.
        self.on_change: list[Callable[[Change], None]] = []

    def find_tenant(self, ref: str) -> Tenant | None:
        """By tenant GUID or by any verified domain, case-insensitively."""
        folded = ref.casefold()
        with self.lock:
            for tenant in self.tenants.values():
                if tenant.id == folded or folded in (d.casefold() for d in tenant.domains):
                    return tenant
        return None

    def find_app(self, client_id: str) -> App | None:
        with self.lock:
            for tenant in self.tenants.values():
                if client_id in tenant.apps:
                    return tenant.apps[client_id]
        return None

    def find_user_anywhere(self, ref: str) -> User | None:
        with self.lock:
            for tenant in self.tenants.values():
                user = tenant.find_user(ref)
                if user is not None:
                    return user
        return None

    def record_change(self, change_type: ChangeType, user_id: str, event_id: str) -> Change:
        with self.lock:
            change = Change(len(self.changes) + 1, change_type, user_id, event_id, self.clock.now())
            self.changes.append(change)
            for listener in self.on_change:
                listener(change)
            return change
