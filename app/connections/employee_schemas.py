"""Request and response bodies for employees: the mailbox mapping, its checks, its subscription
status, removals and resyncs."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.connections.mailboxes import normalize_mailbox
from app.connections.schemas import EMPLOYEE_ID_EXAMPLE, ORGANIZATION_ID_EXAMPLE
from app.history.messages import render
from app.models import Employee
from app.notifications.schemas import SubscriptionStatus

_READABLE = "Readable text in the language `Accept-Language` prefers, else the connection's."


def last_error_text(employee: Employee, locale: str, **known: Any) -> str | None:
    """The employee's last error rendered anew in `locale` from its code, its mailbox and the
    params `known` (the connection's tenant and client_id); None when they are not enough."""
    code = employee.last_error_code
    if code is None:
        return None
    return render(code, locale, {**known, "mailbox": employee.mailbox})


class EmployeeIn(BaseModel):
    """Map an employee (bookingtime booking resource) to an Outlook mailbox."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"mailbox": "max.mustermann@contoso.com"}]}
    )

    mailbox: Annotated[str, Field(min_length=3, max_length=320)] = Field(
        json_schema_extra={"format": "email"},  # documents the check of normalize_mailbox
        description=(
            "The employee's mailbox address (primary SMTP address or UPN). Its syntax is checked "
            "here; it is stored NFKC-normalised and lowercase, with an internationalised domain "
            "in its ASCII (punycode) form. A part mixing scripts that look alike (a Cyrillic "
            "`а` among Latin letters) is refused, naming the characters. Whether the mailbox "
            "exists shows in the sync history."
        ),
        examples=["max.mustermann@contoso.com"],
    )

    @field_validator("mailbox")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        return normalize_mailbox(value)


class EmployeeOut(BaseModel):
    """An employee's mailbox and sync status."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "organization_id": ORGANIZATION_ID_EXAMPLE,
                    "employee_id": EMPLOYEE_ID_EXAMPLE,
                    "mailbox": "max.mustermann@contoso.com",
                    "last_success_at": "2026-11-26T10:02:11Z",
                    "last_error_at": "2026-11-25T16:40:00Z",
                    "last_error_code": "mailbox_not_found",
                    "last_error_message": (
                        "User max.mustermann@contoso.com is invalid: it does not exist in the "
                        "organization or the address is mistyped."
                    ),
                    "created_at": "2026-11-25T16:39:00Z",
                    "updated_at": "2026-11-25T16:39:00Z",
                    "subscription": {
                        "state": "active",
                        "expires_at": "2026-12-02T16:39:00Z",
                        "last_notification_at": "2026-11-26T10:01:58Z",
                        "message": None,
                    },
                }
            ]
        }
    )

    organization_id: str = Field(description="bookingtime organisation id.")
    employee_id: str = Field(description="bookingtime booking-resource id.")
    mailbox: str = Field(
        description="Outlook mailbox address, lowercase, an internationalised domain in punycode."
    )
    last_success_at: datetime | None = Field(description="Last successful sync (Letzter Erfolg).")
    last_error_at: datetime | None = Field(description="Last failed sync.")
    last_error_code: str | None = Field(description="Stable code of the last error.")
    last_error_message: str | None = Field(
        description="Readable message of the last error, as written in the connection's language; "
        "with `Accept-Language`, told anew in that language where its code allows."
    )
    created_at: datetime
    updated_at: datetime
    subscription: SubscriptionStatus | None = Field(
        default=None,
        description="Change notifications from Outlook for the mailbox (null: not known yet).",
    )

    @classmethod
    def build(
        cls,
        employee: Employee,
        *,
        organization_id: str,
        subscription: SubscriptionStatus | None = None,
        error_message: str | None = None,
    ) -> EmployeeOut:
        """The response for a stored employee (`error_message`: its last error told anew)."""
        return cls(
            subscription=subscription,
            organization_id=organization_id,
            employee_id=employee.booking_resource_id,
            mailbox=employee.mailbox,
            last_success_at=employee.last_success_at,
            last_error_at=employee.last_error_at,
            last_error_code=employee.last_error_code,
            last_error_message=error_message or employee.last_error_message,
            created_at=employee.created_at,
            updated_at=employee.updated_at,
        )


class MailboxCheckOut(BaseModel):
    """The mailbox check of an employee PUT."""

    ok: bool | None = Field(
        description="True: the app can read the mailbox's calendar; false: it cannot (see "
        "`code`); null: Microsoft Graph could not be reached, the check runs in the background."
    )
    code: str = Field(
        description="Stable code: `mailbox_ok`, an error code such as `mailbox_invalid`, or "
        "`check_pending`."
    )
    message: str = Field(description=_READABLE)


class EmployeePutOut(EmployeeOut):
    """The employee after a PUT, with the result of checking its mailbox against Graph."""

    mailbox_check: MailboxCheckOut
    backfill_queued: bool = Field(
        description="The appointments calbridge already holds for the employee are being synced "
        "to the mailbox in the background (a new or moved mapping whose check did not fail)."
    )


class RemovalOut(BaseModel):
    """An employee deleted with `remove_events=true`."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "organization_id": ORGANIZATION_ID_EXAMPLE,
                    "employee_id": EMPLOYEE_ID_EXAMPLE,
                    "mailbox": "max.mustermann@contoso.com",
                    "events": 12,
                    "mailbox_check": {
                        "ok": False,
                        "code": "secret_expired",
                        "message": "The app registration's client secret has expired. Create a "
                        "new secret in Entra and enter it in the connection.",
                    },
                    "message": "The events calbridge created for "
                    "brAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA (12) cannot be removed from the calendar "
                    "of max.mustermann@contoso.com right now: "
                    "The app registration's client secret has expired. Create a new secret in "
                    "Entra and enter it in the connection. The removal is retried when the "
                    "connection gets new credentials; its failed jobs can also be retried under "
                    "/api/v1/jobs.",
                }
            ]
        }
    )

    organization_id: str
    employee_id: str
    mailbox: str = Field(description="The mailbox the events are removed from.")
    events: int = Field(description="calbridge events queued for removal.")
    mailbox_check: MailboxCheckOut | None = Field(
        description="Whether calbridge can reach the mailbox now (null: nothing to remove)."
    )
    message: str = Field(description=_READABLE)


class ResyncOut(BaseModel):
    """A resync of an employee, queued."""

    organization_id: str
    employee_id: str
    mailbox: str
    queued: bool = Field(description="False: a resync of the employee was already waiting.")
    message: str = Field(description=_READABLE)
