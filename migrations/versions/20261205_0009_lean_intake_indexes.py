"""lean intake indexes: fewer index entries per received webhook

`ix_appointment_connection_id` duplicated the leading column of the appointment's unique key;
`ix_job_mailbox_state` and `ix_job_finished_at` become partial (jobs with a mailbox, finished
jobs), so an intake's `sync.appointment` job, which has neither, adds no entry to them.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-05 11:20:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_PARTIAL = {
    "ix_job_mailbox_state": (["mailbox", "state"], "mailbox IS NOT NULL"),
    "ix_job_finished_at": (["finished_at"], "finished_at IS NOT NULL"),
}


def upgrade() -> None:
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.drop_index("ix_appointment_connection_id")
    with op.batch_alter_table("job", schema=None) as batch_op:
        for name, (columns, where) in _PARTIAL.items():
            batch_op.drop_index(name)
            batch_op.create_index(
                name,
                columns,
                unique=False,
                sqlite_where=sa.text(where),
                postgresql_where=sa.text(where),
            )


def downgrade() -> None:
    with op.batch_alter_table("job", schema=None) as batch_op:
        for name, (columns, _where) in _PARTIAL.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, columns, unique=False)
    with op.batch_alter_table("appointment", schema=None) as batch_op:
        batch_op.create_index("ix_appointment_connection_id", ["connection_id"], unique=False)
