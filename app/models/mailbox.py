"""`mailbox`: per-mailbox queue state shared by all workers (Graph throttling)."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import String
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, UTCDateTime


class Mailbox(Base):
    __tablename__ = "mailbox"

    address: Mapped[str] = mapped_column(String(320), primary_key=True)
    # No job for this mailbox is claimed before this time (Graph's Retry-After).
    throttled_until: Mapped[datetime | None] = mapped_column(UTCDateTime)
