"""The admin API: every admin router (each declares its full `/api/v1/...` path) behind the
bearer-token dependency (which also keeps `read` tokens to safe methods), with its 401, 403 and
429 problems documented once.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.admin import busy, connections, employees, history, jobs, subscriptions
from app.admin.auth import require_admin
from app.http.problems import problem_responses

PREFIX = "/api/"
# Admin bodies are small JSON documents; larger ones are refused before they are buffered
# (app.http.limits.BodyCapMiddleware, installed for PREFIX by create_app).
MAX_BODY_BYTES = 64 * 1024

# 400: FastAPI's answer to a JSON body it cannot decode at all (not UTF-8, nested too deep).
router = APIRouter(
    dependencies=[Depends(require_admin)], responses=problem_responses(400, 401, 403, 413, 429)
)
router.include_router(connections.router)
router.include_router(employees.router)
router.include_router(history.router)
router.include_router(jobs.router)
router.include_router(subscriptions.router)
router.include_router(busy.router)
