"""job_pending_notify: PostgreSQL notifies `calbridge_jobs` when a job becomes pending

A worker in a process of its own found a job queued by another process (the API's intake) only
at its next poll, half a second by default: at a few changes a minute, a change reached Outlook
300 ms after its webhook (p50; p99 560 ms) instead of 60 ms. A trigger on `job` now notifies
the channel when a job becomes pending (enqueued, retried, released, requeued), with the schema
as the payload; the workers listen there and claim at once. SQLite: nothing (calbridge runs its
worker in the API's process there, which wakes it directly).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-05 21:40:00.000000
"""

from __future__ import annotations

from collections.abc import Sequence

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        "CREATE OR REPLACE FUNCTION calbridge_job_pending() RETURNS trigger LANGUAGE plpgsql"
        " AS $$ BEGIN PERFORM pg_notify('calbridge_jobs', TG_TABLE_SCHEMA); RETURN NULL; END $$"
    )
    op.execute(
        "CREATE TRIGGER job_pending_notify AFTER INSERT OR UPDATE OF state ON job FOR EACH ROW"
        " WHEN (NEW.state = 'pending') EXECUTE FUNCTION calbridge_job_pending()"
    )


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS job_pending_notify ON job")
    op.execute("DROP FUNCTION IF EXISTS calbridge_job_pending()")
