"""outlook side: subscriptions, calendarView delta state, busy blocks, detached event mappings

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26 18:05:49.659689
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "busy_block",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("connection_id", sa.BigInteger(), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("graph_event_id", sa.String(length=512), nullable=False),
        sa.Column("series_master_id", sa.String(length=512), nullable=True),
        sa.Column("start_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("end_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("show_as", sa.String(length=32), nullable=False),
        sa.Column("is_all_day", sa.Boolean(), nullable=False),
        sa.Column("subject", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connection.id"],
            name=op.f("fk_busy_block_connection_id_connection"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_busy_block")),
        sa.UniqueConstraint(
            "connection_id", "mailbox", "graph_event_id", name="uq_busy_block_event"
        ),
    )
    with op.batch_alter_table("busy_block", schema=None) as batch_op:
        batch_op.create_index(
            "ix_busy_block_mailbox_start", ["connection_id", "mailbox", "start_at"], unique=False
        )

    op.create_table(
        "calendar_sync",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("connection_id", sa.BigInteger(), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("delta_link", sa.Text(), nullable=True),
        sa.Column("window_start", sa.DateTime(timezone=True), nullable=True),
        sa.Column("window_end", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_synced_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_full_sync_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connection.id"],
            name=op.f("fk_calendar_sync_connection_id_connection"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_calendar_sync")),
        sa.UniqueConstraint("connection_id", "mailbox", name="uq_calendar_sync_mailbox"),
    )
    with op.batch_alter_table("calendar_sync", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_calendar_sync_connection_id"), ["connection_id"], unique=False
        )

    op.create_table(
        "subscription",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("connection_id", sa.BigInteger(), nullable=False),
        sa.Column("mailbox", sa.String(length=320), nullable=False),
        sa.Column("graph_subscription_id", sa.String(length=128), nullable=True),
        sa.Column("client_state_encrypted", sa.Text(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_notification_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_renewed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_reauthorized_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_error_code", sa.String(length=64), nullable=True),
        sa.Column("last_error_message", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["connection_id"],
            ["connection.id"],
            name=op.f("fk_subscription_connection_id_connection"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subscription")),
        sa.UniqueConstraint("connection_id", "mailbox", name="uq_subscription_mailbox"),
        sa.UniqueConstraint(
            "graph_subscription_id", name=op.f("uq_subscription_graph_subscription_id")
        ),
    )
    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_subscription_connection_id"), ["connection_id"], unique=False
        )

    with op.batch_alter_table("event_mapping", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("detached", sa.Boolean(), server_default=sa.false(), nullable=False)
        )


def downgrade() -> None:
    with op.batch_alter_table("event_mapping", schema=None) as batch_op:
        batch_op.drop_column("detached")

    with op.batch_alter_table("subscription", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_subscription_connection_id"))

    op.drop_table("subscription")
    with op.batch_alter_table("calendar_sync", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_calendar_sync_connection_id"))

    op.drop_table("calendar_sync")
    with op.batch_alter_table("busy_block", schema=None) as batch_op:
        batch_op.drop_index("ix_busy_block_mailbox_start")

    op.drop_table("busy_block")
