"""`employee`: a bookingtime booking resource mapped to an Outlook mailbox, with its sync status."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, UTCDateTime, utcnow


class Employee(Base):
    __tablename__ = "employee"
    __table_args__ = (UniqueConstraint("connection_id", "booking_resource_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("connection.id", ondelete="CASCADE")
    )
    # bookingtime's booking-resource id (`br…`): the API's {employee_id}.
    booking_resource_id: Mapped[str] = mapped_column(String(64))
    mailbox: Mapped[str] = mapped_column(String(320))
    last_success_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
