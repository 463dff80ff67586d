"""Request and response bodies for connections and employees (secrets are write-only)."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from email_validator import EmailNotValidError, validate_email
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    field_validator,
)

from app.connections.secrets import secret_status
from app.models import Connection, Employee
from app.models.base import utcnow
from app.sync.repository import translation_settings
from app.sync.translate import EventSettings

# bookingtime ids are 32 characters (`f6…` organisations, `br…` booking resources); the rule is
# looser so that custom ids and test ids fit, but never anything a URL path would mangle.
ID_PATTERN = r"^[A-Za-z0-9_-]+$"
ID_MAX_LENGTH = 64
ORGANIZATION_ID_EXAMPLE = "f6AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
EMPLOYEE_ID_EXAMPLE = "brAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"

WEBHOOK_SECRET_PREFIX = "whsec_"  # noqa: S105 (the Standard Webhooks prefix, not a secret)
WEBHOOK_SECRET_MIN_BYTES = 24
WEBHOOK_SECRET_MAX_BYTES = 64
CLIENT_SECRET_MAX_LENGTH = 1024

Locale = Literal["de", "en"]

_DATE_ONLY = re.compile(r"\d{4}-\d{2}-\d{2}")
_EXPIRY_FORMS = "give a date (2027-05-31) or a datetime with an offset (2027-05-31T12:00:00Z)"


def webhook_path(organization_id: str) -> str:
    """Where bookingtime delivers this organisation's webhooks, relative to calbridge's base URL."""
    return f"/webhooks/bookingtime/{organization_id}"


def _strip(value: Any) -> Any:
    return value.strip() if isinstance(value, str) else value


class ConnectionIn(BaseModel):
    """Create or update a connection. Omitted optional fields keep their stored value on update."""

    model_config = ConfigDict(
        extra="forbid",
        # Validation errors would otherwise carry the secrets into anything that logs them.
        hide_input_in_errors=True,
        json_schema_extra={
            "examples": [
                {
                    "tenant": "contoso.onmicrosoft.com",
                    "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
                    "client_secret": "Xy48Q~abcdefghijklmnopqrstuvwxyz0123456",
                    "client_secret_expires_at": "2027-05-31",
                    "locale": "de",
                },
                {
                    "tenant": "https://login.microsoftonline.com/72f988bf-86f1-41af-91ab-2d7cd011db47/v2.0",
                    "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
                    "client_secret": "Xy48Q~abcdefghijklmnopqrstuvwxyz0123456",
                    "client_secret_expires_at": "2027-05-31T12:00:00Z",
                    "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
                    "locale": "en",
                },
            ]
        },
    )

    tenant: str = Field(
        min_length=1,
        max_length=512,
        description=(
            "The Entra directory (tenant) ID, a domain of the tenant, or the authority URL "
            "`https://login.microsoftonline.com/<tenant>` (anything after the tenant is ignored). "
            "Stored as a lowercase GUID or domain. `common`, `organizations` and `consumers` are "
            "refused: a single-tenant app registration needs its own tenant."
        ),
        examples=[
            "72f988bf-86f1-41af-91ab-2d7cd011db47",
            "contoso.onmicrosoft.com",
            "https://login.microsoftonline.com/contoso.com/v2.0",
        ],
    )
    client_id: UUID = Field(
        description="The app registration's application (client) ID.",
        examples=["6731de76-14a6-49ae-97bc-6eba6914391e"],
    )
    client_secret: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=CLIENT_SECRET_MAX_LENGTH,
        description=(
            "The app registration's client secret (its value, not its ID). Required when the "
            "connection is created; omit it on update to keep the stored one. Write-only."
        ),
        examples=["Xy48Q~abcdefghijklmnopqrstuvwxyz0123456"],
    )
    client_secret_expires_at: AwareDatetime | date | None = Field(
        default=None,
        description=(
            "When the client secret expires, so calbridge can warn before sync stops: a date "
            "(that day 00:00 UTC) or a datetime with an offset. Omitted on update it is kept, "
            "unless a new `client_secret` is given (the stored date belonged to the old one); "
            "`null` clears it."
        ),
        examples=["2027-05-31", "2027-05-31T12:00:00+02:00"],
    )
    webhook_secret: SecretStr | None = Field(
        default=None,
        description=(
            "The Standard Webhooks secret bookingtime signs with: `whsec_` and the base64 of "
            f"{WEBHOOK_SECRET_MIN_BYTES}–{WEBHOOK_SECRET_MAX_BYTES} random bytes. Omitted on "
            "create, calbridge generates one and returns it once; omitted on update, the stored "
            "one is kept. Write-only."
        ),
        examples=["whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"],
    )
    locale: Locale | None = Field(
        default=None,
        description="Language of texts calbridge writes (events, errors): `de` (default) or `en`.",
        examples=["de"],
    )
    event_settings: EventSettings | None = Field(
        default=None,
        description=(
            "How appointments look in Outlook. Given, it replaces the stored settings (fields "
            "it omits take their defaults); omitted, they are kept. A change (or a new `locale`) "
            "updates the connection's current and future events in the background."
        ),
    )

    @field_validator("tenant", "client_secret", "webhook_secret", mode="before")
    @classmethod
    def _strip_whitespace(cls, value: Any) -> Any:
        # Pasted values often carry a newline or spaces; none of these values can contain them.
        return _strip(value)

    @field_validator("client_secret_expires_at", mode="before")
    @classmethod
    def _date_or_aware_datetime(cls, value: Any) -> Any:
        # Parsed here, not by the union: pydantic reads "2027-05-31T00:00:00" as a date, and a
        # time without an offset is ambiguous.
        if value is None or isinstance(value, datetime | date):
            parsed = value
        elif isinstance(value, str):
            text = value.strip()
            try:
                parsed = (
                    date.fromisoformat(text)
                    if _DATE_ONLY.fullmatch(text)
                    else datetime.fromisoformat(text)
                )
            except ValueError:
                raise ValueError(_EXPIRY_FORMS) from None
        else:
            raise ValueError(_EXPIRY_FORMS)
        if isinstance(parsed, datetime) and parsed.tzinfo is None:
            raise ValueError(f"the datetime has no offset; {_EXPIRY_FORMS}")
        return parsed

    @field_validator("webhook_secret")
    @classmethod
    def _standard_webhooks_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value()
        problem = (
            f"must be {WEBHOOK_SECRET_PREFIX!r} followed by the base64 of "
            f"{WEBHOOK_SECRET_MIN_BYTES}–{WEBHOOK_SECRET_MAX_BYTES} bytes"
        )
        if not raw.startswith(WEBHOOK_SECRET_PREFIX):
            raise ValueError(problem)
        try:
            key = base64.b64decode(raw.removeprefix(WEBHOOK_SECRET_PREFIX), validate=True)
        except (binascii.Error, ValueError) as exc:
            raise ValueError(problem) from exc
        if not WEBHOOK_SECRET_MIN_BYTES <= len(key) <= WEBHOOK_SECRET_MAX_BYTES:
            raise ValueError(f"{problem}, not {len(key)}")
        return value

    @property
    def expires_at_utc(self) -> datetime | None:
        """`client_secret_expires_at` as an aware UTC datetime (a date is its midnight UTC)."""
        value = self.client_secret_expires_at
        if value is None:
            return None
        if isinstance(value, datetime):
            return value.astimezone(UTC)
        return datetime.combine(value, time(0, 0), tzinfo=UTC)


_CONNECTION_EXAMPLE: dict[str, JsonValue] = {
    "organization_id": ORGANIZATION_ID_EXAMPLE,
    "tenant": "contoso.onmicrosoft.com",
    "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
    "client_secret_expires_at": "2027-05-31T00:00:00Z",
    "secret_state": "ok",
    "secret_days_left": 186,
    "locale": "de",
    "event_settings": {
        "subject_template": "{name} – {customer}",
        "include_customer_contact": True,
        "reminder_minutes": 15,
        "category": "bookingtime",
        "on_cancel": "delete",
        "outlook_changes": "restore",
        "busy_subjects": False,
    },
    "webhook_url": f"/webhooks/bookingtime/{ORGANIZATION_ID_EXAMPLE}",
    "previous_webhook_secret_expires_at": None,
    "employee_count": 3,
    "created_at": "2026-11-26T09:30:00Z",
    "updated_at": "2026-11-26T09:30:00Z",
}


def event_settings_of(connection: Connection) -> EventSettings:
    """The connection's effective event settings (without the locale, which is its own field)."""
    effective = translation_settings(connection).model_dump(exclude={"locale"})
    return EventSettings.model_validate(effective)


class ConnectionOut(BaseModel):
    """A connection as the admin sees it: never a secret."""

    model_config = ConfigDict(json_schema_extra={"examples": [_CONNECTION_EXAMPLE]})

    organization_id: str = Field(description="bookingtime organisation id.")
    tenant: str = Field(description="Entra tenant, normalised (lowercase GUID or domain).")
    client_id: str = Field(description="Application (client) ID of the app registration.")
    client_secret_expires_at: datetime | None = Field(
        description="When the client secret expires (UTC), if known."
    )
    secret_state: Literal["ok", "expiring", "expired", "rejected"] = Field(
        description=(
            "The client secret's state: `ok`; `expiring` (expires within 30 days); `expired` "
            "(its date has passed); `rejected` (Microsoft Entra refused it in a sync or a verify, "
            "whatever its date says; cleared by a new secret or a successful sync or verify). "
            "Warnings 30, 14, 7 and 1 days before expiry are in the sync history."
        )
    )
    secret_days_left: int | None = Field(
        description="Whole days until the client secret expires (0 once expired; null: no date)."
    )
    locale: str = Field(description="Language of texts calbridge writes.")
    event_settings: EventSettings = Field(
        description="How appointments look in Outlook (the defaults where none were set)."
    )
    webhook_url: str = Field(
        description=(
            "Path of this organisation's bookingtime webhook endpoint, relative to calbridge's "
            "public base URL: configure it in bookingtime with the webhook secret."
        )
    )
    previous_webhook_secret_expires_at: datetime | None = Field(
        default=None,
        description=(
            "Until when deliveries signed with the webhook secret replaced by the last rotation "
            "are still accepted (UTC); null when no such grace period is running."
        ),
    )
    employee_count: int = Field(description="Employees mapped to mailboxes.")
    created_at: datetime
    updated_at: datetime

    @classmethod
    def build(cls, connection: Connection, *, employee_count: int) -> Self:
        """The response for a stored connection."""
        secret = secret_status(connection)
        return cls(
            organization_id=connection.organization_id,
            tenant=connection.tenant,
            client_id=connection.client_id,
            client_secret_expires_at=connection.client_secret_expires_at,
            secret_state=secret.state,
            secret_days_left=secret.days_left,
            locale=connection.locale,
            event_settings=event_settings_of(connection),
            webhook_url=webhook_path(connection.organization_id),
            previous_webhook_secret_expires_at=_running(
                connection.previous_webhook_secret_expires_at
            ),
            employee_count=employee_count,
            created_at=connection.created_at,
            updated_at=connection.updated_at,
        )


def _running(until: datetime | None) -> datetime | None:
    """`until` while it is in the future (a grace period that ended is no longer shown)."""
    return until if until is not None and until > utcnow() else None


class ConnectionPutOut(ConnectionOut):
    """The connection after a PUT, with the webhook secret if calbridge just generated it."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    **_CONNECTION_EXAMPLE,
                    "employee_count": 0,
                    "webhook_secret": "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwgjb3Zk5JGHk=",
                }
            ]
        }
    )

    webhook_secret: str | None = Field(
        default=None,
        description=(
            "The webhook secret calbridge generated for this connection: shown only in this "
            "response, so copy it into bookingtime now. Null when the secret was given or kept."
        ),
    )


def normalize_mailbox(value: str) -> str:
    """The mailbox address in its stored form (lowercase); ValueError with the reason if invalid."""
    try:
        result = validate_email(value.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        raise ValueError(str(exc)) from exc
    return result.normalized.lower()


class EmployeeIn(BaseModel):
    """Map an employee (bookingtime booking resource) to an Outlook mailbox."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"mailbox": "max.mustermann@contoso.com"}]}
    )

    mailbox: Annotated[str, Field(min_length=3, max_length=320)] = Field(
        json_schema_extra={"format": "email"},  # documents the check of normalize_mailbox
        description=(
            "The employee's mailbox address (primary SMTP address or UPN). Its syntax is checked "
            "here and stored lowercase; whether it exists shows in the sync history."
        ),
        examples=["max.mustermann@contoso.com"],
    )

    @field_validator("mailbox")
    @classmethod
    def _valid_address(cls, value: str) -> str:
        return normalize_mailbox(value)


class SubscriptionStatus(BaseModel):
    """The Graph change-notification subscription of the employee's mailbox."""

    state: Literal["pending", "active", "failed", "disabled"] = Field(
        description="`pending` (being set up), `active`, `failed` (see `message`), `disabled` "
        "(no public URL configured)."
    )
    expires_at: datetime | None = Field(description="When Graph ends it unless renewed.")
    last_notification_at: datetime | None = Field(description="Last change notification.")
    message: str | None = Field(description="Readable reason when it is not active.")


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
    mailbox: str = Field(description="Outlook mailbox address, lowercase.")
    last_success_at: datetime | None = Field(description="Last successful sync (Letzter Erfolg).")
    last_error_at: datetime | None = Field(description="Last failed sync.")
    last_error_code: str | None = Field(description="Stable code of the last error.")
    last_error_message: str | None = Field(description="Readable message of the last error.")
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
    ) -> EmployeeOut:
        """The response for a stored employee."""
        return cls(
            subscription=subscription,
            organization_id=organization_id,
            employee_id=employee.booking_resource_id,
            mailbox=employee.mailbox,
            last_success_at=employee.last_success_at,
            last_error_at=employee.last_error_at,
            last_error_code=employee.last_error_code,
            last_error_message=employee.last_error_message,
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
    message: str = Field(description="Readable result in the connection's language.")


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
    message: str = Field(description="Readable outcome in the connection's language.")


class ResyncOut(BaseModel):
    """A resync of an employee, queued."""

    organization_id: str
    employee_id: str
    mailbox: str
    queued: bool = Field(description="False: a resync of the employee was already waiting.")
    message: str = Field(description="Readable outcome in the connection's language.")


class VerifyIn(BaseModel):
    """What to verify besides the credentials."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"mailbox": "max.mustermann@contoso.com"}]}
    )

    mailbox: (
        Annotated[
            str,
            Field(min_length=3, max_length=320, json_schema_extra={"format": "email"}),
        ]
        | None
    ) = Field(default=None, description="A mailbox to check as well (its calendar is read).")

    @field_validator("mailbox")
    @classmethod
    def _valid_address(cls, value: str | None) -> str | None:
        return None if value is None else normalize_mailbox(value)


class CheckOut(BaseModel):
    """One check and its readable result."""

    name: str = Field(description="`token` or `mailbox`.")
    ok: bool | None = Field(description="Passed; null when skipped after an earlier failure.")
    code: str = Field(description="Stable code of the result (`skipped` when not run).")
    message: str = Field(description="Readable result.")


class VerifyOut(BaseModel):
    """The result of verifying a connection."""

    ok: bool = Field(description="Every check passed.")
    checks: list[CheckOut]
