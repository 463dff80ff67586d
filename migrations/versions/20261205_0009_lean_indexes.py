"""lean indexes: no index duplicating a unique key's leading column; partial job indexes

`ix_<table>_connection_id` duplicated the leading column of the unique key of `appointment`,
`employee`, `event_mapping`, `calendar_sync` and `subscription`. Besides costing an entry per
row, it misled SQLite: for a mapping's rows by appointment (`ORDER BY id`) it scanned every
mapping of the connection through `ix_event_mapping_connection_id` (already ordered by id)
instead of seeking the unique key, which made each sync job's read grow with the connection's
history. `ix_job_mailbox_state` and `ix_job_finished_at` become partial (jobs with a mailbox,
finished jobs), so an intake's `sync.appointment` job, which has neither, adds no entry to them.

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

# Tables whose unique key leads with connection_id (which serves the cascade from connection).
_LED_BY_CONNECTION = ("appointment", "employee", "event_mapping", "calendar_sync", "subscription")

_PARTIAL = {
    "ix_job_mailbox_state": (["mailbox", "state"], "mailbox IS NOT NULL"),
    "ix_job_finished_at": (["finished_at"], "finished_at IS NOT NULL"),
}


def upgrade() -> None:
    for table in _LED_BY_CONNECTION:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_index(f"ix_{table}_connection_id")
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
    for table in _LED_BY_CONNECTION:
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.create_index(f"ix_{table}_connection_id", ["connection_id"], unique=False)
