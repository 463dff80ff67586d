"""Response bodies of the sync history."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field

from app.history.messages import Locale, has_message, render
from app.models import SyncRecord

#: Every outcome a sync history record can have: the `status` filter accepts these and only
#: these (a typo is a 422 listing them, not an empty page). A new outcome belongs here too;
#: tests/admin/test_history.py checks the code writes no other.
SyncStatus = Literal[
    "success",
    "skipped",
    "queued",
    "retrying",
    "error",
    "failed",
    "conflict",
    "warning",
    "ok",
]
SYNC_STATUSES: frozenset[str] = frozenset(get_args(SyncStatus))


class SyncRecordOut(BaseModel):
    """One sync attempt and its outcome."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": 4711,
                    "organization_id": "f6AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                    "employee_id": "brAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                    "mailbox": "d.wellt@organization.com",
                    "appointment_id": "edAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                    "job_id": 815,
                    "action": "create",
                    "status": "failed",
                    "code": "mailbox_not_found",
                    "message": (
                        "User d.wellt@organization.com is invalid: it does not exist in the "
                        "organization or the address is mistyped."
                    ),
                    "details": {"graph_status": 404, "graph_code": "ErrorInvalidUser"},
                    "duration_ms": 182,
                    "graph_request_id": "0a1b2c3d-4e5f-6789-abcd-ef0123456789",
                    "created_at": "2026-11-26T10:02:11Z",
                }
            ]
        }
    )

    id: int = Field(description="Record id; higher is newer.")
    organization_id: str = Field(description="bookingtime organisation id.")
    employee_id: str | None = Field(description="bookingtime booking-resource id, if any.")
    mailbox: str | None = Field(description="Target Outlook mailbox, if any.")
    appointment_id: str | None = Field(description="bookingtime appointment id, if any.")
    job_id: int | None = Field(description="The queue job that made this attempt, if any.")
    action: str = Field(description="What was attempted, e.g. `create`, `update`, `delete`.")
    status: str = Field(description="Outcome: one of the `status` filter's values.")
    code: str = Field(description="Stable outcome code.")
    message: str = Field(
        description="Readable outcome: in the language `Accept-Language` asks for (`de` or "
        "`en`), else in the connection's language."
    )
    details: dict[str, Any] | None = Field(
        description="Structured details of the outcome, among them the values its message is "
        "made of (`reason_code` and `field_code` name the texts it quotes)."
    )
    duration_ms: int | None = Field(description="How long the attempt took.")
    graph_request_id: str | None = Field(
        description="Microsoft Graph `request-id`, for Microsoft support."
    )
    created_at: datetime

    @classmethod
    def build(
        cls, record: SyncRecord, *, organization_id: str, locale: Locale | None = None
    ) -> SyncRecordOut:
        """The response for a stored record; with `locale`, its message rendered anew in that
        language from the record's code and details (the stored text, in the language it was
        written in, when the code is unknown or the details lack a value it needs)."""
        text = record.message
        if locale is not None:
            text = rerendered(record, locale) or text
        return cls(
            id=record.id,
            organization_id=organization_id,
            employee_id=record.booking_resource_id,
            mailbox=record.mailbox,
            appointment_id=record.appointment_id,
            job_id=record.job_id,
            action=record.action,
            status=record.status,
            code=record.code,
            message=text,
            details=record.details,
            duration_ms=record.duration_ms,
            graph_request_id=record.graph_request_id,
            created_at=record.created_at,
        )


def rerendered(record: SyncRecord, locale: Locale) -> str | None:
    """The record's message in `locale` from its details (`message_code` when its text is not its
    code's), its mailbox and employee filling in for details stored without them; or None."""
    params: dict[str, Any] = {}
    if record.mailbox is not None:
        params["mailbox"] = record.mailbox
    if record.booking_resource_id is not None:
        params["employee"] = record.booking_resource_id
    params.update(record.details or {})
    code = params.get("message_code", record.code)
    if not isinstance(code, str) or not has_message(code):
        return None
    return render(code, locale, params)
