"""Response bodies of the notifications domain: a mailbox's subscription status."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, Field


class SubscriptionStatus(BaseModel):
    """The Graph change-notification subscription of the employee's mailbox."""

    state: Literal["pending", "active", "failed", "disabled"] = Field(
        description="`pending` (being set up), `active`, `failed` (see `message`), `disabled` "
        "(no public URL configured)."
    )
    expires_at: datetime | None = Field(description="When Graph ends it unless renewed.")
    last_notification_at: datetime | None = Field(description="Last change notification.")
    message: str | None = Field(description="Readable reason when it is not active.")
