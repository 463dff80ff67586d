"""`/healthz` (the process answers) and `/readyz` (database reachable, schema at head)."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.db import Database
from app.http.problems import problem_response, problem_responses
from app.migrate import current_revision, head_revision, ping

router = APIRouter(tags=["health"])

_HEAD = head_revision()


@router.get("/healthz", summary="The process is up")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Ready for traffic: database reachable and schema at head",
    responses=problem_responses(503),
)
async def readyz(request: Request) -> JSONResponse:
    database: Database = request.app.state.database
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
