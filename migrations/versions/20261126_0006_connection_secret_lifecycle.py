"""connection secret lifecycle: Entra's rejection of the client secret, expiry warnings sent

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26 19:00:14.751628
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connection", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("client_secret_rejected_at", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column("client_secret_rejected_code", sa.String(length=32), nullable=True)
        )
        batch_op.add_column(
            sa.Column("client_secret_warned_days", sa.SmallInteger(), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("connection", schema=None) as batch_op:
        batch_op.drop_column("client_secret_warned_days")
        batch_op.drop_column("client_secret_rejected_code")
        batch_op.drop_column("client_secret_rejected_at")
