"""`calendar_sync`: the calendarView delta state of one mailbox (where the next delta resumes)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, UTCDateTime, utcnow


class CalendarSync(Base):
    __tablename__ = "calendar_sync"
    __table_args__ = (
        UniqueConstraint("connection_id", "mailbox", name="uq_calendar_sync_mailbox"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("connection.id", ondelete="CASCADE")
    )
    mailbox: Mapped[str] = mapped_column(String(320))
    # Graph's @odata.deltaLink (or the nextLink of a round cut short); None: start a full sync.
    delta_link: Mapped[str | None] = mapped_column(Text)
    # The calendarView window the delta link was made for; a new day rolls it (full sync).
    window_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    window_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_synced_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_full_sync_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
