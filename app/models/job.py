"""`job`: the durable work queue shared by every worker process (see app/queue)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import DDL, CheckConstraint, Index, Integer, String, Text, event, text
from sqlalchemy.orm import Mapped, mapped_column

from app.models.base import Base, BigIntPK, JSONDoc, UTCDateTime, utcnow

JOB_STATES = ("pending", "running", "done", "failed", "dead")

# PostgreSQL: a job that becomes pending (enqueued, retried, released, requeued) notifies this
# channel when its transaction commits, with its schema as the payload, and the workers
# listening there claim at once instead of at their next poll (app/queue/wakeups.py). The
# server sends one notification per transaction and payload, however many jobs it queued.
JOBS_CHANNEL = "calbridge_jobs"
NOTIFY_FUNCTION = f"""
CREATE OR REPLACE FUNCTION calbridge_job_pending() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('{JOBS_CHANNEL}', TG_TABLE_SCHEMA);
    RETURN NULL;
END
$$"""
NOTIFY_TRIGGER = """
CREATE TRIGGER job_pending_notify AFTER INSERT OR UPDATE OF state ON job
FOR EACH ROW WHEN (NEW.state = 'pending') EXECUTE FUNCTION calbridge_job_pending()"""


class Job(Base):
    __tablename__ = "job"
    __table_args__ = (
        CheckConstraint(
            "state IN ('pending', 'running', 'done', 'failed', 'dead')", name="state_valid"
        ),
        # One pending job per dedupe key: enqueueing it again is a no-op.
        Index(
            "uq_job_pending_dedupe_key",
            "dedupe_key",
            unique=True,
            sqlite_where=text("state = 'pending'"),
            postgresql_where=text("state = 'pending'"),
        ),
        # The claim's order (run_at, id) among pending jobs: without `id`, PostgreSQL checks
        # every pending job's serial and mailbox limits before it sorts.
        Index("ix_job_state_run_at_id", "state", "run_at", "id"),
        Index("ix_job_serial_key_state", "serial_key", "state"),
        # Partial: most jobs (every intake's `sync.appointment`) have no mailbox, and only
        # finished jobs are pruned by `finished_at`; the intake then adds no entry to either.
        Index(
            "ix_job_mailbox_state",
            "mailbox",
            "state",
            sqlite_where=text("mailbox IS NOT NULL"),
            postgresql_where=text("mailbox IS NOT NULL"),
        ),
        Index(
            "ix_job_finished_at",
            "finished_at",
            sqlite_where=text("finished_at IS NOT NULL"),
            postgresql_where=text("finished_at IS NOT NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(BigIntPK, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64), index=True)
    args: Mapped[dict[str, Any]] = mapped_column(JSONDoc, default=dict)
    state: Mapped[str] = mapped_column(String(16), default="pending")
    run_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    max_attempts: Mapped[int | None] = mapped_column(Integer)
    dedupe_key: Mapped[str | None] = mapped_column(String(255))
    serial_key: Mapped[str | None] = mapped_column(String(255))
    mailbox: Mapped[str | None] = mapped_column(String(320))
    worker_id: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finished_at: Mapped[datetime | None] = mapped_column(UTCDateTime)


for _statement in (NOTIFY_FUNCTION, NOTIFY_TRIGGER):
    event.listen(
        Job.__table__,
        "after_create",
        DDL(_statement).execute_if(dialect="postgresql"),  # type: ignore[no-untyped-call]
    )
