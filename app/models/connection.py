"""`connection`: one bookingtime organisation linked to one Entra tenant and app registration."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import String, Text
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
    webhook_secret_encrypted: Mapped[str] = mapped_column(Text)
    locale: Mapped[str] = mapped_column(String(8), default="de")
    # app.sync.translate.EventSettings as set by the admin; None: every default.
    event_settings: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
