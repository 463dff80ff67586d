"""`appointment`: the newest known state of each bookingtime appointment (a snapshot)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Boolean, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, JSONDoc, UTCDateTime, utcnow


class Appointment(Base):
    __tablename__ = "appointment"
    # Its index also serves lookups by connection alone (the cascade from `connection`).
    __table_args__ = (UniqueConstraint("connection_id", "appointment_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("connection.id", ondelete="CASCADE")
    )
    # bookingtime's appointment id (`ed…`).
    appointment_id: Mapped[str] = mapped_column(String(64))
    # The `appointment` object of the newest event, exactly as bookingtime sent it.
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDoc)
    # The webhook body's `timestamp`: an older event never replaces a newer snapshot.
    event_at: Mapped[datetime] = mapped_column(UTCDateTime)
    event_type: Mapped[str] = mapped_column(String(64))
    canceled: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
