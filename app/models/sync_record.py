"""`sync_record`: the sync history, one row per attempt, with a readable outcome."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, JSONDoc, UTCDateTime, utcnow


class SyncRecord(Base):
    __tablename__ = "sync_record"
    __table_args__ = (
        Index("ix_sync_record_connection_id_id", "connection_id", "id"),
        # Every sync.appointment job reads its appointment's records (the `unmapped` ones).
        Index("ix_sync_record_connection_id_appointment_id", "connection_id", "appointment_id"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("connection.id", ondelete="CASCADE")
    )
    # Plain ids, not foreign keys: history outlives an employee's mapping.
    booking_resource_id: Mapped[str | None] = mapped_column(String(64), index=True)
    mailbox: Mapped[str | None] = mapped_column(String(320))
    appointment_id: Mapped[str | None] = mapped_column(String(64))
    job_id: Mapped[int | None] = mapped_column(BigInteger)
    action: Mapped[str] = mapped_column(String(32))
    status: Mapped[str] = mapped_column(String(16), index=True)
    code: Mapped[str] = mapped_column(String(64))
    message: Mapped[str] = mapped_column(Text)
    details: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    duration_ms: Mapped[int | None] = mapped_column(Integer)
    graph_request_id: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
