"""The admin API: every admin router (each declares its full `/api/v1/...` path) behind the
bearer-token dependency (which also keeps `read` tokens to safe methods), with its 401, 403 and
429 problems documented once.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends

from app.admin import busy, connections, employees, history, jobs, subscriptions
from app.admin.auth import require_admin
from app.problems import problem_responses

router = APIRouter(
    dependencies=[Depends(require_admin)], responses=problem_responses(401, 403, 429)
)
router.include_router(connections.router)
router.include_router(employees.router)
router.include_router(history.router)
router.include_router(jobs.router)
router.include_router(subscriptions.router)
router.include_router(busy.router)
