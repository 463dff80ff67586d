"""Request and response bodies for connections and their verification (secrets are
write-only), and the id and mailbox rules the employee bodies share."""

from __future__ import annotations

import base64
import binascii
import re
from datetime import UTC, date, datetime, time
from typing import Annotated, Any, Literal, Self
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    SecretStr,
    field_validator,
)

from app.connections.bookingtime_schemas import BookingtimeApiIn, BookingtimeApiOut
from app.connections.mailboxes import normalize_mailbox
from app.credentials.secrets import secret_status
from app.models import Connection
from app.models.base import utcnow
from app.sync.settings import EventSettings, translation_settings

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


# Far wider than any secret's life, far inside what datetime arithmetic can reach: a year-9999
# date would overflow when calbridge counts the days left or schedules the warnings.
EXPIRY_EARLIEST = datetime(2000, 1, 1, tzinfo=UTC)
EXPIRY_LATEST = datetime(2100, 1, 1, tzinfo=UTC)


def _in_expiry_range(value: date) -> bool:
    """Whether an expiry date or aware datetime lies in [EXPIRY_EARLIEST, EXPIRY_LATEST)."""
    if not isinstance(value, datetime):
        return EXPIRY_EARLIEST.date() <= value < EXPIRY_LATEST.date()
    # Compared without converting: an aware comparison cannot overflow, while converting
    # 9999-12-31T23:00-05:00 to UTC would.
    return EXPIRY_EARLIEST <= value < EXPIRY_LATEST


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
            "`null` clears it. From 2000-01-01 and before 2100-01-01 (UTC)."
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
    bookingtime_api: BookingtimeApiIn | None = Field(
        default=None,
        description=(
            "The bookingtime app calbridge reads appointments with. Omitted, the stored settings "
            "are kept; `null` turns the connector off and forgets its credentials."
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
        if parsed is not None and not _in_expiry_range(parsed):
            raise ValueError(
                f"must be from {EXPIRY_EARLIEST.date()} and before {EXPIRY_LATEST.date()} (UTC)"
            )
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
    bookingtime_api: BookingtimeApiOut | None = Field(
        default=None, description="The bookingtime app's settings; null while the connector is off."
    )
    created_at: datetime
    updated_at: datetime

    @classmethod
    def build(
        cls, connection: Connection, *, employee_count: int, locale: str | None = None
    ) -> Self:
        """The response for a stored connection, its texts in `locale` (else the connection's)."""
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
            bookingtime_api=BookingtimeApiOut.build(connection, locale=locale or connection.locale),
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

    name: str = Field(description="`token`, `mailbox` or `bookingtime`.")
    ok: bool | None = Field(description="Passed; null when skipped after an earlier failure.")
    code: str = Field(description="Stable code of the result (`skipped` when not run).")
    message: str = Field(description="Readable result.")


class VerifyOut(BaseModel):
    """The result of verifying a connection."""

    ok: bool = Field(description="Every check passed.")
    checks: list[CheckOut]
