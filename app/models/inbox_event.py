"""`inbox_event`: every webhook delivery accepted, unique per source, connection and message id."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, UTCDateTime, utcnow

INBOX_ACCEPTED = "accepted"  # stored and a job enqueued
INBOX_IGNORED = "ignored"  # unknown event type: recorded, nothing else
INBOX_STALE = "stale"  # older than the stored snapshot: recorded, snapshot unchanged


class InboxEvent(Base):
    __tablename__ = "inbox_event"
    __table_args__ = (UniqueConstraint("source", "connection_id", "external_id"),)

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    source: Mapped[str] = mapped_column(String(32))
    connection_id: Mapped[int | None] = mapped_column(
        BigInteger, ForeignKey("connection.id", ondelete="CASCADE"), index=True
    )
    # The sender's message id (`webhook-id` for bookingtime): the idempotency key.
    external_id: Mapped[str] = mapped_column(String(255))
    event_type: Mapped[str] = mapped_column(String(128))
    subject_id: Mapped[str | None] = mapped_column(String(64))  # e.g. the appointment id
    outcome: Mapped[str] = mapped_column(String(16))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, index=True)
