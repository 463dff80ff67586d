"""How a connection's events look in Outlook: the EventSettings an admin sets on a connection,
and the TranslationSettings (those plus the connection's language) that translate() applies."""

from __future__ import annotations

import logging
import string
from collections.abc import Mapping
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

if TYPE_CHECKING:
    from app.models import Connection

log = logging.getLogger(__name__)

Locale = Literal["de", "en"]

#: Placeholders of `subject_template`; each renders "" when the appointment lacks it.
PLACEHOLDERS: Mapping[str, str] = {
    "name": "the appointment's name",
    "customer": "the customer's full name (several: comma-separated)",
    "service": "the booked service (bookingTemplate.name)",
    "employee": "the appointment's employees (comma-separated)",
    "city": "the address's city",
}

# Graph caps the subject at 255; the category's bound is our own.
SUBJECT_MAX = 255
CATEGORY_MAX = 255


class EventSettings(BaseModel):
    """How a connection's appointments look in Outlook, as the admin sets them on the connection;
    validated when set, not when used."""

    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "subject_template": "{service}: {customer}",
                    "include_customer_contact": False,
                    "reminder_minutes": 30,
                    "category": "bookingtime",
                    "on_cancel": "delete",
                }
            ]
        },
    )

    subject_template: str = Field(
        default="{name} – {customer}",
        min_length=1,
        max_length=SUBJECT_MAX,
        description=(
            "The event's subject. Placeholders: "
            + "; ".join(f"`{{{key}}}` {text}" for key, text in PLACEHOLDERS.items())
            + ". A placeholder the appointment lacks is dropped with the separator next to it; "
            "write `{{` and `}}` for literal braces."
        ),
    )
    include_customer_contact: bool = Field(
        default=True,
        description="Put the customer's email address and phone number in the event's body.",
    )
    reminder_minutes: int | None = Field(
        default=15,
        ge=0,
        le=40_320,
        description="Outlook reminder this many minutes before the start; `null`: no reminder.",
    )
    category: str | None = Field(
        default="bookingtime",
        min_length=1,
        max_length=CATEGORY_MAX,
        description="Outlook category of every event calbridge writes; `null`: none.",
    )
    on_cancel: Literal["delete", "mark"] = Field(
        default="delete",
        description=(
            "A cancelled appointment's event: `delete` it, or `mark` it (subject prefixed "
            "“Abgesagt:”/“Canceled:”, shown as free, no reminder)."
        ),
    )
    outlook_changes: Literal["restore", "keep", "report"] = Field(
        default="restore",
        description=(
            "When a person edits or deletes one of calbridge's events in Outlook: `restore` it "
            "(bookingtime is the source of truth), `keep` Outlook's version (calbridge stops "
            "updating that event), or only `report` it in the sync history."
        ),
    )
    busy_subjects: bool = Field(
        default=False,
        description=(
            "Store the subjects of other Outlook events with their busy blocks (and show them "
            "in the busy API); off, only their times are kept."
        ),
    )

    @field_validator("subject_template")
    @classmethod
    def _known_placeholders(cls, template: str) -> str:
        try:
            parts = list(string.Formatter().parse(template))
        except ValueError as exc:
            raise ValueError(f"subject_template is not a valid template: {exc}") from None
        for _, field, spec, conversion in parts:
            if field is None:
                continue
            if field not in PLACEHOLDERS:
                known = ", ".join("{" + k + "}" for k in PLACEHOLDERS)
                raise ValueError(
                    f"subject_template: unknown placeholder {{{field}}}; use {known}"
                    " (write {{ and }} for literal braces)"
                )
            if conversion or spec:
                raise ValueError(f"subject_template: {{{field}}} takes no conversion or format")
        return template


class TranslationSettings(EventSettings):
    """A connection's EventSettings with the language of the labels it writes (its `locale`)."""

    locale: Locale = "de"


def translation_settings(connection: Connection) -> TranslationSettings:
    """How the connection's events look: its event settings in its language.

    Settings are validated when the admin sets them; a stored document this version cannot read
    (written by a newer one, say) falls back to the defaults instead of stopping the sync.
    """
    stored = dict(connection.event_settings or {})
    locale = connection.locale if connection.locale in ("de", "en") else "de"
    try:
        return TranslationSettings.model_validate({**stored, "locale": locale})
    except ValidationError as exc:
        log.warning(
            "connection %s: stored event settings unreadable, using the defaults: %s",
            connection.organization_id,
            exc.errors(include_input=False),
        )
        return TranslationSettings.model_validate({"locale": locale})
