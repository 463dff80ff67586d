"""bookingtime_api: the connection's bookingtime App API credentials, busy write-back and state

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 09:00:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0011"
down_revision: str | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connection", schema=None) as batch_op:
        batch_op.add_column(sa.Column("bookingtime_client_id", sa.String(length=64), nullable=True))
        batch_op.add_column(
            sa.Column("bookingtime_client_secret_encrypted", sa.Text(), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "bookingtime_busy_writeback",
                sa.Boolean(),
                server_default=sa.false(),
                nullable=False,
            )
        )
        batch_op.add_column(
            sa.Column("bookingtime_busy_exception_type", sa.String(length=32), nullable=True)
        )
        batch_op.add_column(sa.Column("bookingtime_state", sa.String(length=16), nullable=True))
        batch_op.add_column(
            sa.Column("bookingtime_checked_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("bookingtime_error_code", sa.String(length=64), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "bookingtime_error_params",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
        batch_op.add_column(
            sa.Column("bookingtime_last_poll_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("connection", schema=None) as batch_op:
        batch_op.drop_column("bookingtime_last_poll_at")
        batch_op.drop_column("bookingtime_error_params")
        batch_op.drop_column("bookingtime_error_code")
        batch_op.drop_column("bookingtime_checked_at")
        batch_op.drop_column("bookingtime_state")
        batch_op.drop_column("bookingtime_busy_exception_type")
        batch_op.drop_column("bookingtime_busy_writeback")
        batch_op.drop_column("bookingtime_client_secret_encrypted")
        batch_op.drop_column("bookingtime_client_id")
