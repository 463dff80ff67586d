"""Admin API over the job queue: list jobs, retry dead or failed ones."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, ConfigDict, Field, field_validator

from app.admin.auth import AdminPrincipal, require_admin
from app.admin.dependencies import DbSession
from app.admin.pagination import Cursor, Limit, Page, decode_cursor, encode_cursor
from app.http.problems import ProblemError, problem_responses
from app.models.base import utcnow
from app.queue.errors import DuplicatePendingJob, JobNotFound, JobNotRetriable
from app.queue.repository import list_jobs, requeue

router = APIRouter(prefix="/api/v1/jobs", tags=["jobs"], dependencies=[Depends(require_admin)])

JobState = Literal["pending", "running", "done", "failed", "dead"]

_EXAMPLE: dict[str, Any] = {
    "id": 42,
    "kind": "sync.appointment",
    "args": {"connection_id": 1, "appointment_id": "a-1001"},
    "state": "dead",
    "run_at": "2026-11-26T09:15:00Z",
    "attempts": 8,
    "max_attempts": None,
    "dedupe_key": "appointment:1:a-1001",
    "serial_key": "appointment:1:a-1001",
    "mailbox": "d.wellt@organization.com",
    "last_error": "TransportError: connection reset by peer",
    "created_at": "2026-11-26T08:00:00Z",
    "started_at": "2026-11-26T09:15:00Z",
    "finished_at": "2026-11-26T09:15:02Z",
}


class JobOut(BaseModel):
    """One job of the queue."""

    model_config = ConfigDict(from_attributes=True, json_schema_extra={"examples": [_EXAMPLE]})

    id: int
    kind: str = Field(description="dotted job kind, e.g. `sync.appointment`")
    args: dict[str, Any] | None = Field(
        description="the job's arguments; null for a `read` token (they are payload). Values "
        "under a key naming a secret (such as `client_secret_encrypted`) read `[redacted]`."
    )
    state: JobState
    run_at: datetime = Field(description="not started before this time")
    attempts: int = Field(description="runs started so far")
    max_attempts: int | None = Field(description="null: the worker default")
    dedupe_key: str | None = Field(description="at most one pending job per key")
    serial_key: str | None = Field(description="at most one running job per key")
    mailbox: str | None = Field(description="the Graph mailbox the job writes to")
    last_error: str | None = Field(
        description="the last run's error; null when none, and always for a `read` token"
    )
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @field_validator("args")
    @classmethod
    def _hide_secrets(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _masked(value)


REDACTED = "[redacted]"


def _masked(value: Any) -> Any:
    """`value` with everything under a key that names a secret replaced: a job that must reach
    Graph after its connection is gone carries the (encrypted) client secret, and even a
    ciphertext has no business in an API answer."""
    if isinstance(value, dict):
        return {
            key: REDACTED if "secret" in str(key).lower() else _masked(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [_masked(item) for item in value]
    return value


def _example(status: int, code: str, title: str, detail: str) -> dict[str, Any]:
    body = {
        "type": f"https://calbridge.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
        "instance": "/api/v1/jobs/42/retry",
    }
    return {"summary": code, "value": body}


def _with_examples(
    responses: dict[int | str, dict[str, Any]], examples: dict[int, dict[str, Any]]
) -> dict[int | str, dict[str, Any]]:
    for status, named in examples.items():
        responses[status]["content"]["application/problem+json"]["examples"] = named
    return responses


_RETRY_PROBLEMS = _with_examples(
    problem_responses(401, 404, 409, 422),
    {
        404: {
            "job_not_found": _example(404, "job_not_found", "No such job", "job 42 does not exist")
        },
        409: {
            "job_not_retriable": _example(
                409,
                "job_not_retriable",
                "Only dead or failed jobs can be retried",
                "job 42 is running: only dead or failed jobs can be retried",
            ),
            "job_duplicate_pending": _example(
                409,
                "job_duplicate_pending",
                "A pending job with the same dedupe key exists",
                "job 57 with the same dedupe key is already pending",
            ),
        },
    },
)


@router.get(
    "",
    summary="List jobs, newest first",
    description=(
        "Filter by `state` and `kind`; page with `cursor` (the previous `next_cursor`). For a "
        "token with the role `read`, `args` and `last_error` are null: they can hold payload "
        "(appointment ids, mailboxes, Graph error texts) that only `admin` may see."
    ),
    responses=problem_responses(400, 401, 422),
)
async def get_jobs(
    session: DbSession,
    principal: AdminPrincipal,
    state: Annotated[JobState | None, Query(description="only jobs in this state")] = None,
    kind: Annotated[str | None, Query(max_length=64, description="only jobs of this kind")] = None,
    limit: Limit = 50,
    cursor: Cursor = None,
) -> Page[JobOut]:
    jobs = await list_jobs(
        session, state=state, kind=kind, before_id=decode_cursor(cursor), limit=limit + 1
    )
    await session.commit()  # the token's last use
    page = jobs[:limit]
    next_cursor = encode_cursor(page[-1].id) if len(jobs) > limit else None
    items = [JobOut.model_validate(job) for job in page]
    if not principal.is_admin:
        items = [item.model_copy(update={"args": None, "last_error": None}) for item in items]
    return Page[JobOut](items=items, next_cursor=next_cursor)


@router.post(
    "/{job_id}/retry",
    summary="Retry a dead or failed job",
    description=(
        "Puts the job back to `pending`, due now, with its attempts reset. Only `dead` and "
        "`failed` jobs can be retried, and not while another job with the same dedupe key "
        "is pending (that one will do the work)."
    ),
    responses=_RETRY_PROBLEMS,
)
async def retry_job(
    session: DbSession,
    # le: ids are BIGINT; a larger number is no job and would overflow the database driver.
    job_id: Annotated[int, Path(ge=1, le=2**63 - 1, description="the job's id")],
) -> JobOut:
    try:
        job = await requeue(session, job_id, now=utcnow())
    except JobNotFound as exc:
        raise ProblemError(404, "job_not_found", "No such job", str(exc)) from exc
    except JobNotRetriable as exc:
        raise ProblemError(
            409, "job_not_retriable", "Only dead or failed jobs can be retried", str(exc)
        ) from exc
    except DuplicatePendingJob as exc:
        raise ProblemError(
            409,
            "job_duplicate_pending",
            "A pending job with the same dedupe key exists",
            str(exc),
            pending_job_id=exc.pending_id,
        ) from exc
    out = JobOut.model_validate(job)
    await session.commit()
    return out
