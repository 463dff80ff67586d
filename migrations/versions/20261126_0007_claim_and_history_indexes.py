"""claim and history indexes: the job claim's order (state, run_at, id), and sync records by
appointment (read by every sync.appointment job)

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 20:05:04.232646
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        # The new index first: the old one serves claims until it is there.
        batch_op.create_index("ix_job_state_run_at_id", ["state", "run_at", "id"], unique=False)
        batch_op.drop_index(batch_op.f("ix_job_state_run_at"))

    with op.batch_alter_table("sync_record", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sync_record_connection_id_appointment_id",
            ["connection_id", "appointment_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_record", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_record_connection_id_appointment_id")

    with op.batch_alter_table("job", schema=None) as batch_op:
        batch_op.drop_index("ix_job_state_run_at_id")
        batch_op.create_index(batch_op.f("ix_job_state_run_at"), ["state", "run_at"], unique=False)
