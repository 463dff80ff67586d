"""`event_mapping`: calbridge's Outlook event per (appointment, employee, generation), with what
was last written; a row without `graph_event_id` is a create of unknown outcome."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    ForeignKey,
    Integer,
    String,
    Text,
    UniqueConstraint,
    false,
)
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, JSONDoc, UTCDateTime, utcnow


class EventMapping(Base):
    __tablename__ = "event_mapping"
    __table_args__ = (
        # Named explicitly: the convention's name would pass PostgreSQL's 63-character limit.
        UniqueConstraint(
            "connection_id",
            "appointment_id",
            "booking_resource_id",
            "generation",
            name="uq_event_mapping_generation",
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("connection.id", ondelete="CASCADE")
    )
    appointment_id: Mapped[str] = mapped_column(String(64))
    booking_resource_id: Mapped[str] = mapped_column(String(64))
    mailbox: Mapped[str] = mapped_column(String(320), index=True)
    generation: Mapped[int] = mapped_column(Integer)
    # None while a create's outcome is unknown (the row is written before the POST).
    graph_event_id: Mapped[str | None] = mapped_column(Text)
    ical_uid: Mapped[str | None] = mapped_column(Text)
    change_key: Mapped[str | None] = mapped_column(String(255))
    # EventBody.field_hashes() of the last successful write.
    field_hashes: Mapped[dict[str, str]] = mapped_column(JSONDoc, default=dict)
    # A tombstone: the event is gone, the row stays so its generation is never reused.
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    # A person changed the event in Outlook and the connection's policy is `keep`: calbridge
    # no longer updates it (it still deletes it when the appointment is cancelled).
    detached: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
