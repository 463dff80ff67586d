"""Everything the bookingtime emulator knows: apps and their permitted organisations, issued
tokens, and per organisation its booking resources, employees, synchronizations, appointments
and availability exceptions. One lock guards it: tests change it from their own thread."""

from __future__ import annotations

import hashlib
import re
import secrets
import string
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Literal

from app.sandbox.clock import Clock

ALPHABET = string.ascii_letters + string.digits
ID_LENGTH = 32  # a 2-character type prefix and 30 characters [a-zA-Z0-9]
ORGANIZATION_ID = re.compile(r"f6[a-zA-Z0-9]{30}")
ACCESS_TOKEN_LIFETIME = timedelta(seconds=300)
REFRESH_TOKEN_LIFETIME = timedelta(days=30)

# The type prefix of each id kind (reference §3.3).
ORGANIZATION, APP, APPOINTMENT, BOOKING_RESOURCE = "f6", "70", "ed", "br"
EMPLOYEE, EXCEPTION, SYNCHRONIZATION, CUSTOMER = "Eh", "ac", "A7", "d3"


def new_id(prefix: str) -> str:
    return prefix + "".join(secrets.choice(ALPHABET) for _ in range(ID_LENGTH - len(prefix)))


def stable_id(prefix: str, name: str) -> str:
    """The same id for the same name in every run, for the ready-made demo setup."""
    digest = hashlib.sha256(name.encode()).digest()
    return prefix + "".join(ALPHABET[b % len(ALPHABET)] for b in digest[: ID_LENGTH - len(prefix)])


@dataclass
class Switches:
    """Answers to what the reference leaves UNKNOWN, so tests can cover each possibility."""

    list_canceled: bool = True  # canceled appointments stay in RANGE_LISTs
    timestamp_edit: bool = False  # appointments carry timestampAdd and timestampEdit
    exception_types: frozenset[str] = frozenset({"FREE"})  # availabilityException `type`s
    # A LIST holds at most this many records while recordTotal counts them all; lower it to make
    # a client page through the `index/{page}` routes.
    list_limit: int = 9999


@dataclass
class BtApp:
    client_id: str
    secret: str
    organizations: set[str] = field(default_factory=set)  # those the app is permitted for


@dataclass
class BookingResource:
    id: str
    organization_id: str
    name: str
    category: str
    custom_id: str | None


@dataclass
class Employee:
    id: str
    organization_id: str
    first_name: str
    last_name: str
    email: str | None
    custom_id: str | None


@dataclass
class Synchronization:
    id: str
    organization_id: str
    booking_resource_id: str
    email: str
    type: str


@dataclass
class Appointment:
    """Times are UTC instants; the API renders them in the organisation's time zone."""

    id: str
    organization_id: str
    start: datetime
    end: datetime
    booking_resource_ids: list[str]
    name: str
    description: str
    notes: str | None
    customer: dict[str, Any] | None
    address: dict[str, Any] | None
    custom_id: str | None
    created_at: datetime
    edited_at: datetime
    canceled: bool = False
    moved: bool = False


@dataclass
class AvailabilityException:
    id: str
    organization_id: str
    name: str
    type: str
    booking_resource_id: str
    start: datetime
    end: datetime
    custom_id: str | None
    appointment_template_id: str | None
    created_at: datetime
    edited_at: datetime


@dataclass
class Organization:
    id: str
    name: str
    time_zone: str
    booking_resources: dict[str, BookingResource] = field(default_factory=dict)
    employees: dict[str, Employee] = field(default_factory=dict)
    synchronizations: dict[str, Synchronization] = field(default_factory=dict)
    appointments: dict[str, Appointment] = field(default_factory=dict)
    exceptions: dict[str, AvailabilityException] = field(default_factory=dict)

    def appointment_by_custom_id(self, custom_id: str) -> Appointment | None:
        return next((a for a in self.appointments.values() if a.custom_id == custom_id), None)

    def exception_by_custom_id(self, custom_id: str) -> AvailabilityException | None:
        return next((e for e in self.exceptions.values() if e.custom_id == custom_id), None)


@dataclass
class Grant:
    """An issued refresh or access token; an access token may be bound to one organisation."""

    value: str
    kind: Literal["refresh", "access"]
    client_id: str
    organization_id: str | None
    expires_at: datetime


class BookingtimeStore:
    """The emulator's state. Take `lock` around any read-modify-write."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.lock = threading.RLock()
        self.switches = Switches()
        self.apps: dict[str, BtApp] = {}
        self.organizations: dict[str, Organization] = {}
        self.grants: dict[str, Grant] = {}
        self.token_requests: Counter[tuple[str, str | None]] = Counter()
        self.access_token_lifetime = ACCESS_TOKEN_LIFETIME
        self.refresh_token_lifetime = REFRESH_TOKEN_LIFETIME

    def organization(self, organization_id: str) -> Organization:
        """The organisation, or KeyError naming it."""
        with self.lock:
            org = self.organizations.get(organization_id)
        if org is None:
            raise KeyError(f"no organization {organization_id}")
        return org
