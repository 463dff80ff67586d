"""`connection`: one bookingtime organisation linked to one Entra tenant and app registration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Boolean, SmallInteger, String, Text, false
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, JSONDoc, UTCDateTime, utcnow


class Connection(Base):
    __tablename__ = "connection"

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    organization_id: Mapped[str] = mapped_column(String(64), unique=True)
    tenant: Mapped[str] = mapped_column(String(255))
    client_id: Mapped[str] = mapped_column(String(64))
    # Fernet tokens (app.crypto); never the plain secret.
    client_secret_encrypted: Mapped[str] = mapped_column(Text)
    client_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Entra refused the stored client secret (a sync, verify or check said invalid/expired),
    # whatever its date says; cleared by a new secret or a success. Code: secret_invalid|expired.
    client_secret_rejected_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    client_secret_rejected_code: Mapped[str | None] = mapped_column(String(32))
    # The most urgent expiry warning (days before expiry: 30, 14, 7, 1) already recorded for the
    # current secret and date, so each crossing is announced once; None: none yet.
    client_secret_warned_days: Mapped[int | None] = mapped_column(SmallInteger)
    webhook_secret_encrypted: Mapped[str] = mapped_column(Text)
    # The webhook secret a rotation replaced, still accepted until `..._expires_at` so deliveries
    # bookingtime signed before it switched still verify; None: no grace period running.
    previous_webhook_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    previous_webhook_secret_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    locale: Mapped[str] = mapped_column(String(8), default="de")
    # app.sync.translate.EventSettings as set by the admin; None: every default.
    event_settings: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    # The bookingtime App API connector; all None (and no write-back) while it is off.
    bookingtime_client_id: Mapped[str | None] = mapped_column(String(64))
    bookingtime_client_secret_encrypted: Mapped[str | None] = mapped_column(Text)
    bookingtime_busy_writeback: Mapped[bool] = mapped_column(
        Boolean, default=False, server_default=false()
    )
    bookingtime_busy_exception_type: Mapped[str | None] = mapped_column(String(32))
    # What the last verify (or poll) found: ok|rejected|unreachable; None: not checked with the
    # current credentials. The error's params are kept so its message renders in either language.
    bookingtime_state: Mapped[str | None] = mapped_column(String(16))
    bookingtime_checked_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    bookingtime_error_code: Mapped[str | None] = mapped_column(String(64))
    bookingtime_error_params: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    bookingtime_last_poll_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
