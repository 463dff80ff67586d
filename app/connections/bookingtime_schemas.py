"""Request and response bodies of a connection's bookingtime App API settings (`bookingtime_api`):
the app's credentials (the secret write-only), busy write-back, and what the last check found."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationInfo, field_validator

from app.history.messages import message
from app.models import Connection

BOOKINGTIME_SECRET_MAX_LENGTH = 1024

BookingtimeState = Literal["ok", "rejected", "unreachable", "unchecked"]


class BookingtimeApiIn(BaseModel):
    """The bookingtime app calbridge reads the organisation's appointments with."""

    model_config = ConfigDict(
        extra="forbid",
        # Validation errors would otherwise carry the secret into anything that logs them.
        hide_input_in_errors=True,
        json_schema_extra={
            "examples": [
                {
                    "client_id": "app-4711",
                    "client_secret": "bt-secret-value",
                    "busy_writeback": True,
                    "busy_exception_type": "FREE",
                }
            ]
        },
    )

    client_id: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[A-Za-z0-9._:-]+$",
        description="The bookingtime app's client id.",
    )
    client_secret: SecretStr | None = Field(
        default=None,
        min_length=1,
        max_length=BOOKINGTIME_SECRET_MAX_LENGTH,
        description=(
            "The bookingtime app's client secret. Required with a new `client_id`; omitted with "
            "the stored `client_id`, the stored secret is kept. Write-only."
        ),
    )
    busy_writeback: bool = Field(
        default=False,
        description="Write Outlook busy times back to bookingtime as availability exceptions.",
    )
    busy_exception_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=32,
        pattern=r"^[A-Za-z0-9_]+$",
        # Validated when omitted too, so write-back without a type is refused naming it.
        validate_default=True,
        description=(
            "The availability exception `type` busy times are written as (e.g. `FREE`); "
            "required when `busy_writeback` is true."
        ),
    )

    @field_validator("client_id", "client_secret", mode="before")
    @classmethod
    def _strip_whitespace(cls, value: Any) -> Any:
        # Pasted values often carry a newline or spaces; neither value can contain them.
        return value.strip() if isinstance(value, str) else value

    @field_validator("busy_exception_type", mode="after")
    @classmethod
    def _needed_for_writeback(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None and info.data.get("busy_writeback"):
            raise ValueError("required when busy_writeback is true")
        return value


class BookingtimeApiOut(BaseModel):
    """The connection's bookingtime app as the admin sees it: never the secret."""

    client_id: str = Field(description="The bookingtime app's client id.")
    busy_writeback: bool = Field(description="Outlook busy times are written to bookingtime.")
    busy_exception_type: str | None = Field(
        description="The availability exception `type` of busy times written back."
    )
    state: BookingtimeState = Field(
        description=(
            "What the last check with these credentials found: `ok`; `rejected` (bookingtime "
            "refused the credentials, or the app is not permitted for the organisation); "
            "`unreachable` (bookingtime could not be asked); `unchecked` (not checked since the "
            "credentials were set: run verify)."
        )
    )
    checked_at: datetime | None = Field(description="When the state was last found (UTC).")
    last_poll_at: datetime | None = Field(
        description="When calbridge last read appointments from bookingtime (UTC)."
    )
    last_error_code: str | None = Field(description="Stable code of the last error, if any.")
    last_error_message: str | None = Field(
        description="The last error, readable, in the answer's language."
    )

    @classmethod
    def build(cls, connection: Connection, *, locale: str) -> Self | None:
        """The settings of a connection; None while its bookingtime connector is off."""
        if connection.bookingtime_client_id is None:
            return None
        code = connection.bookingtime_error_code
        params = connection.bookingtime_error_params or {}
        return cls(
            client_id=connection.bookingtime_client_id,
            busy_writeback=connection.bookingtime_busy_writeback,
            busy_exception_type=connection.bookingtime_busy_exception_type,
            state=_state(connection.bookingtime_state),
            checked_at=connection.bookingtime_checked_at,
            last_poll_at=connection.bookingtime_last_poll_at,
            last_error_code=code,
            last_error_message=None if code is None else message(code, locale, params),
        )


_STATES: dict[str | None, BookingtimeState] = {
    "ok": "ok",
    "rejected": "rejected",
    "unreachable": "unreachable",
}


def _state(stored: str | None) -> BookingtimeState:
    return _STATES.get(stored, "unchecked")
