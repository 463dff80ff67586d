"""`/healthz` (the process answers) and `/readyz` (database reachable, schema at head), each also
for `HEAD`: load balancers and uptime checks that only look at the status use it."""

from __future__ import annotations

import logging
from contextvars import ContextVar

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

from app.db import Database
from app.http.problems import problem_response, problem_responses
from app.migrate import current_revision, head_revision, ping

router = APIRouter(tags=["health"])

_HEAD = head_revision()

# Reading the schema's revision opens an Alembic migration context, which logs "Context impl …"
# and "Will assume … DDL" at INFO: with probes every few seconds, that would be most of the log.
_checking_readiness: ContextVar[bool] = ContextVar("calbridge_checking_readiness", default=False)
_ALEMBIC_LOGGERS = ("alembic.runtime.migration", "alembic.runtime.plugins")


class _QuietWhileCheckingReadiness(logging.Filter):
    """Drops Alembic's informational lines while `/readyz` runs; its warnings pass, and
    `calbridge migrate` keeps all of them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.levelno >= logging.WARNING or not _checking_readiness.get()


_QUIET = _QuietWhileCheckingReadiness()
for _name in _ALEMBIC_LOGGERS:
    logging.getLogger(_name).addFilter(_QUIET)


def _without_body(response: Response) -> Response:
    """The answer to `HEAD`: the `GET` answer's status and headers (its Content-Length
    included), no body."""
    return Response(status_code=response.status_code, headers=dict(response.headers))


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


# Not in the OpenAPI document: the GET operations describe the answers, and HEAD is GET without
# the body (RFC 9110, 9.3.2).
@router.head("/healthz", include_in_schema=False)
async def healthz_head() -> Response:
    return _without_body(JSONResponse({"status": "ok"}))


@router.get(
    "/readyz",
    summary="Ready for traffic: database reachable and schema at head",
    responses=problem_responses(503),
)
async def readyz(request: Request) -> JSONResponse:
    database: Database = request.app.state.database
    quiet = _checking_readiness.set(True)
    try:
        async with database.engine.connect() as connection:
            await ping(connection)
            revision = await current_revision(connection)
    except Exception as exc:  # any driver error means "not ready"; the type is in the detail
        return problem_response(
            request,
            status=503,
            code="database_unavailable",
            title="The database cannot be reached",
            detail=f"{type(exc).__name__}: check CALBRIDGE_DATABASE_URL and the database server",
        )
    finally:
        _checking_readiness.reset(quiet)
    if revision != _HEAD:
        return problem_response(
            request,
            status=503,
            code="schema_outdated",
            title="The database schema is not at the version this code needs",
            detail=(
                f"database at {revision or 'no schema'}, code needs {_HEAD}: "
                "run `calbridge migrate`"
            ),
        )
    return JSONResponse({"status": "ready", "schema": revision})


@router.head("/readyz", include_in_schema=False)
async def readyz_head(request: Request) -> Response:
    return _without_body(await readyz(request))
