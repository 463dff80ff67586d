"""`connection`: one bookingtime organisation linked to one Entra tenant and app registration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import SmallInteger, String, Text
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
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
