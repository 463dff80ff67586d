"""The bookingtime emulator's control API in Python (`sandbox.control.bookingtime`): apps and the
organisations they may access, who can be booked, what happens to appointments in bookingtime,
the switches for the reference's UNKNOWNs, and the ready-made setup `calbridge sandbox` prints.
`control_router.py` serves the same over HTTP under `/_sandbox/bookingtime`."""

from __future__ import annotations

import hashlib
import secrets
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from app.sandbox.bookingtime import render
from app.sandbox.bookingtime.envelope import API_PATH, TOKEN_PATH
from app.sandbox.bookingtime.store import (
    APP,
    APPOINTMENT,
    BOOKING_RESOURCE,
    EMPLOYEE,
    ORGANIZATION,
    ORGANIZATION_ID,
    SYNCHRONIZATION,
    Appointment,
    BookingResource,
    BookingtimeStore,
    BtApp,
    Employee,
    Organization,
    Switches,
    Synchronization,
    new_id,
    stable_id,
)

EDITABLE = {
    "name": "name",
    "description": "description",
    "notes": "notes",
    "customer": "customer",
    "address": "address",
    "custom_id": "custom_id",
}
# The demo's people are the Graph demo's mailboxes (Control.seed_demo), so the two line up.
DEMO_PEOPLE = (("max", "Max", "Mustermann"), ("erika", "Erika", "Mustermann"))
DEMO_DOMAIN = "contoso.example"


@dataclass(frozen=True)
class BookingtimeDemo:
    client_id: str
    client_secret: str
    organization_id: str
    organization_name: str
    time_zone: str
    booking_resources: tuple[tuple[str, str], ...]  # (id, name)

    def lines(self, sandbox_url: str) -> list[str]:
        """What `calbridge sandbox` prints about bookingtime when it starts."""
        resources = ", ".join(f"{rid} ({name})" for rid, name in self.booking_resources)
        return [
            f"bookingtime auth URL:      {sandbox_url}{TOKEN_PATH}",
            f"bookingtime API URL:       {sandbox_url}{API_PATH}/",
            f"bookingtime client id:     {self.client_id}",
            f"bookingtime client secret: {self.client_secret}",
            f"bookingtime organization:  {self.organization_id}"
            f"  ({self.organization_name}, {self.time_zone})",
            f"booking resources:         {resources}",
        ]


def _utc(value: datetime, name: str) -> datetime:
    if value.tzinfo is None:
        raise ValueError(f"{name} needs a time zone")
    return value.astimezone(UTC)


class BookingtimeControl:
    """Thread-safe: tests call it from their own thread while the sandbox serves."""

    def __init__(self, store: BookingtimeStore) -> None:
        self._store = store

    @property
    def switches(self) -> Switches:
        return self._store.switches

    @property
    def token_requests(self) -> Counter[tuple[str, str | None]]:
        """Token requests so far by (grant_type, organization_id), failed ones included."""
        with self._store.lock:
            return Counter(self._store.token_requests)

    def set_token_lifetimes(
        self, *, access: timedelta | None = None, refresh: timedelta | None = None
    ) -> None:
        """Shorten (or lengthen) the lifetimes of tokens issued from now on."""
        with self._store.lock:
            if access is not None:
                self._store.access_token_lifetime = access
            if refresh is not None:
                self._store.refresh_token_lifetime = refresh

    # Apps and organisations -----------------------------------------------------------------
    def add_app(self, client_id: str | None = None, secret: str | None = None) -> tuple[str, str]:
        """Register an app; returns its client id and secret."""
        app = BtApp(client_id or new_id(APP), secret or secrets.token_urlsafe(30))
        with self._store.lock:
            if app.client_id in self._store.apps:
                raise ValueError(f"app {app.client_id} exists")
            self._store.apps[app.client_id] = app
        return app.client_id, app.secret

    def add_organization(
        self,
        organization_id: str | None = None,
        *,
        time_zone: str = "Europe/Berlin",
        name: str = "Praxis",
    ) -> str:
        org_id = organization_id or new_id(ORGANIZATION)
        if ORGANIZATION_ID.fullmatch(org_id) is None:
            raise ValueError(f"{org_id} is not an organization id (f6 and 30 [a-zA-Z0-9])")
        try:
            ZoneInfo(time_zone)
        except (ZoneInfoNotFoundError, ValueError, OSError):
            raise ValueError(f"unknown time zone {time_zone}") from None
        with self._store.lock:
            if org_id in self._store.organizations:
                raise ValueError(f"organization {org_id} exists")
            self._store.organizations[org_id] = Organization(org_id, name, time_zone)
        return org_id

    def permit(self, client_id: str, organization_id: str, *, allowed: bool = True) -> None:
        """Allow (or stop) the app acting for the organisation; tokens already issued follow."""
        with self._store.lock:
            app = self._store.apps.get(client_id)
            if app is None:
                raise KeyError(f"no app {client_id}")
            self._store.organization(organization_id)
            if allowed:
                app.organizations.add(organization_id)
            else:
                app.organizations.discard(organization_id)

    # Who can be booked ------------------------------------------------------------------------
    def add_booking_resource(
        self, org: str, *, name: str, category: str = "EMPLOYEE", custom_id: str | None = None
    ) -> str:
        return self._put_resource(org, new_id(BOOKING_RESOURCE), name, category, custom_id)

    def _put_resource(
        self, org: str, resource_id: str, name: str, category: str, custom_id: str | None
    ) -> str:
        with self._store.lock:
            organization = self._store.organization(org)
            organization.booking_resources[resource_id] = BookingResource(
                resource_id, org, name, category, custom_id
            )
        return resource_id

    def add_employee(
        self,
        org: str,
        *,
        first_name: str,
        last_name: str,
        email: str | None,
        custom_id: str | None = None,
    ) -> str:
        employee = Employee(new_id(EMPLOYEE), org, first_name, last_name, email, custom_id)
        with self._store.lock:
            self._store.organization(org).employees[employee.id] = employee
        return employee.id

    def add_synchronization(
        self, org: str, booking_resource_id: str, email: str, *, type: str = "GRAPH"
    ) -> str:
        """bookingtime's own calendar sync for a booking resource (calbridge must not double it)."""
        sync = Synchronization(new_id(SYNCHRONIZATION), org, booking_resource_id, email, type)
        with self._store.lock:
            organization = self._store.organization(org)
            self._resources(organization, [booking_resource_id])
            organization.synchronizations[sync.id] = sync
        return sync.id

    # Appointments, as staff or customers change them in bookingtime --------------------------
    def book(
        self,
        org: str,
        *,
        start: datetime,
        end: datetime,
        booking_resource_ids: list[str],
        name: str = "Termin",
        notes: str | None = None,
        customer: dict[str, Any] | None = None,
        address: dict[str, Any] | None = None,
        custom_id: str | None = None,
    ) -> str:
        start_at, end_at = _utc(start, "start"), _utc(end, "end")
        if end_at < start_at:
            raise ValueError("end is before start")
        with self._store.lock:
            organization = self._store.organization(org)
            self._resources(organization, booking_resource_ids)
            self._free_custom_id(organization, custom_id, None)
            now = self._store.clock.now()
            item = Appointment(
                id=new_id(APPOINTMENT),
                organization_id=org,
                start=start_at,
                end=end_at,
                booking_resource_ids=list(booking_resource_ids),
                name=name,
                description="",
                notes=notes,
                customer=dict(customer) if customer is not None else None,
                address=dict(address) if address is not None else None,
                custom_id=custom_id,
                created_at=now,
                edited_at=now,
            )
            organization.appointments[item.id] = item
        return item.id

    def edit(self, org: str, appointment_id: str, **fields: Any) -> None:
        """Change name, description, notes, customer, address or custom_id."""
        unknown = set(fields) - set(EDITABLE)
        if unknown:
            raise ValueError(
                f"cannot edit {', '.join(sorted(unknown))}; edit takes {list(EDITABLE)}"
            )
        with self._store.lock:
            organization, item = self._appointment(org, appointment_id)
            if "custom_id" in fields:
                self._free_custom_id(organization, fields["custom_id"], item.id)
            for name, value in fields.items():
                setattr(item, EDITABLE[name], value)
            item.edited_at = self._store.clock.now()

    def move(self, org: str, appointment_id: str, *, start: datetime, end: datetime) -> None:
        start_at, end_at = _utc(start, "start"), _utc(end, "end")
        if end_at < start_at:
            raise ValueError("end is before start")
        with self._store.lock:
            _, item = self._appointment(org, appointment_id)
            item.start, item.end, item.moved = start_at, end_at, True
            item.edited_at = self._store.clock.now()

    def reassign(self, org: str, appointment_id: str, booking_resource_ids: list[str]) -> None:
        with self._store.lock:
            organization, item = self._appointment(org, appointment_id)
            self._resources(organization, booking_resource_ids)
            item.booking_resource_ids = list(booking_resource_ids)
            item.edited_at = self._store.clock.now()

    def cancel(self, org: str, appointment_id: str) -> None:
        with self._store.lock:
            _, item = self._appointment(org, appointment_id)
            item.canceled = True
            item.edited_at = self._store.clock.now()

    def hard_delete(self, org: str, appointment_id: str) -> None:
        """Gone without a trace (the API has no delete; an admin clean-up might): show is 404."""
        with self._store.lock:
            organization, item = self._appointment(org, appointment_id)
            del organization.appointments[item.id]

    def appointment(self, org: str, appointment_id: str) -> dict[str, Any]:
        """The appointment as `appointment/{id}/show` renders it now."""
        with self._store.lock:
            organization, item = self._appointment(org, appointment_id)
            return render.appointment(item, organization, self._store.switches)

    def exceptions(self, org: str) -> list[dict[str, Any]]:
        """The organisation's availability exceptions as the API renders them, by start."""
        with self._store.lock:
            organization = self._store.organization(org)
            items = sorted(organization.exceptions.values(), key=lambda e: (e.start, e.id))
            return [render.availability_exception(item, organization) for item in items]

    # The ready-made setup ---------------------------------------------------------------------
    def seed_demo(self) -> BookingtimeDemo:
        """An app permitted for one organisation with two booking resources (and their employees),
        with the same ids every run; calling it again changes nothing."""
        client_id = stable_id(APP, "calbridge.bookingtime.demo")
        secret = "sandbox-bookingtime-" + hashlib.sha256(b"secret.bookingtime.demo").hexdigest()
        org_id = stable_id(ORGANIZATION, "praxis.contoso.example")
        org_name, time_zone = "Praxis Contoso", "Europe/Berlin"
        resources = []
        with self._store.lock:
            if org_id not in self._store.organizations:
                self.add_app(client_id, secret)
                self.add_organization(org_id, time_zone=time_zone, name=org_name)
                self.permit(client_id, org_id)
                for key, first, last in DEMO_PEOPLE:
                    resource_id = stable_id(BOOKING_RESOURCE, f"{key}.praxis.contoso.example")
                    self._put_resource(org_id, resource_id, f"{first} {last}", "EMPLOYEE", key)
                    self.add_employee(
                        org_id,
                        first_name=first,
                        last_name=last,
                        email=f"{key}@{DEMO_DOMAIN}",
                        custom_id=key,
                    )
            organization = self._store.organizations[org_id]
            for key, _, _ in DEMO_PEOPLE:
                resource_id = stable_id(BOOKING_RESOURCE, f"{key}.praxis.contoso.example")
                resources.append((resource_id, organization.booking_resources[resource_id].name))
        return BookingtimeDemo(client_id, secret, org_id, org_name, time_zone, tuple(resources))

    # Lookups ----------------------------------------------------------------------------------
    def _appointment(self, org: str, appointment_id: str) -> tuple[Organization, Appointment]:
        organization = self._store.organization(org)
        item = organization.appointments.get(appointment_id)
        if item is None:
            raise KeyError(f"no appointment {appointment_id} in {org}")
        return organization, item

    @staticmethod
    def _resources(organization: Organization, booking_resource_ids: list[str]) -> None:
        unknown = [r for r in booking_resource_ids if r not in organization.booking_resources]
        if unknown:
            raise ValueError(f"no booking resource {', '.join(unknown)} in {organization.id}")

    @staticmethod
    def _free_custom_id(organization: Organization, custom_id: str | None, own: str | None) -> None:
        if custom_id is None:
            return
        taken = organization.appointment_by_custom_id(custom_id)
        if taken is not None and taken.id != own:
            raise ValueError(f"customId {custom_id} is already used by {taken.id}")
