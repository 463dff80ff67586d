"""`subscription`: calbridge's Graph change-notification subscription on one mailbox's events."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import BigInteger, ForeignKey, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, UTCDateTime, utcnow


class Subscription(Base):
    __tablename__ = "subscription"
    __table_args__ = (
        # One per mailbox and connection, however many employees share the mailbox.
        UniqueConstraint("connection_id", "mailbox", name="uq_subscription_mailbox"),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    connection_id: Mapped[int] = mapped_column(
        BigInteger, ForeignKey("connection.id", ondelete="CASCADE")
    )
    mailbox: Mapped[str] = mapped_column(String(320))
    # The mailbox owner's Entra object id: notifications name the mailbox by it, not by address.
    graph_user_id: Mapped[str | None] = mapped_column(String(64))
    # Graph's id; None until Graph has answered the create.
    graph_subscription_id: Mapped[str | None] = mapped_column(String(128), unique=True)
    # A Fernet token (app.crypto) of the random clientState; never the plain value.
    client_state_encrypted: Mapped[str | None] = mapped_column(Text)
    # pending (to be created) | active | failed (see last_error_*) | disabled (no public URL)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_notification_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_renewed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_reauthorized_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error_code: Mapped[str | None] = mapped_column(String(64))
    last_error_message: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
