"""`busy_block`: time an Outlook event that calbridge did not write blocks in a mailbox."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, Boolean, ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, UTCDateTime, utcnow


class BusyBlock(Base):
    __tablename__ = "busy_block"
    __table_args__ = (
        UniqueConstraint("connection_id", "mailbox", "graph_event_id", name="uq_busy_block_event"),
        Index("ix_busy_block_mailbox_start", "connection_id", "mailbox", "start_at"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("connection.id", ondelete="CASCADE")
    )
    mailbox: Mapped[str] = mapped_column(String(320))
    # The event's (immutable) id; for a recurring series, the occurrence's id.
    graph_event_id: Mapped[str] = mapped_column(String(512))
    series_master_id: Mapped[str | None] = mapped_column(String(512))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime] = mapped_column(UTCDateTime)
    # Graph's showAs: busy | tentative | oof | workingElsewhere (free events are no block).
    show_as: Mapped[str] = mapped_column(String(32))
    is_all_day: Mapped[bool] = mapped_column(Boolean, default=False)
    # Only when the connection opts in (event settings `busy_subjects`).
    subject: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
