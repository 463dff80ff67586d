"""webhook secret grace: the webhook secret a rotation replaced, accepted until its expiry

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-26 20:52:40.695753
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0008"
down_revision: str | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("connection", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("previous_webhook_secret_encrypted", sa.Text(), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "previous_webhook_secret_expires_at", sa.DateTime(timezone=True), nullable=True
            )
        )


def downgrade() -> None:
    with op.batch_alter_table("connection", schema=None) as batch_op:
        batch_op.drop_column("previous_webhook_secret_expires_at")
        batch_op.drop_column("previous_webhook_secret_encrypted")
