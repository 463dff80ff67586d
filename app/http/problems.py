"""Errors as RFC 9457 problem documents (`application/problem+json`) with a stable `code`.

ProblemError                 an expected condition, mapped to HTTP in one place
RequestValidationError       → 422 `validation_failed`, naming each field
StarletteHTTPException       → its status, `code` derived from it
anything else                → 500 `internal_error`, logged, no details leaked
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import InterfaceError, OperationalError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

from app import logs

log = logging.getLogger(__name__)

PROBLEM_MEDIA_TYPE = "application/problem+json"
PROBLEM_SCHEMA_REF = "#/components/schemas/Problem"
DATABASE_RETRY_AFTER_SECONDS = 5
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "validation_failed",
    429: "too_many_requests",
    431: "headers_too_large",
    503: "unavailable",
}


class Problem(BaseModel):
    """An RFC 9457 problem document."""

    model_config = ConfigDict(extra="allow")

    type: str = "about:blank"
    title: str
    status: int
    detail: str | None = None
    code: str
    instance: str | None = None


class ProblemError(Exception):
    """An expected failure that becomes a problem response."""

    def __init__(
        self,
        status: int,
        code: str,
        title: str,
        detail: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or title)
        self.status = status
        self.code = code
        self.title = title
        self.detail = detail
        self.headers = headers
        self.extra = extra


def problem_response(
    request: Request,
    *,
    status: int,
    code: str,
    title: str,
    detail: str | None = None,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://calbridge.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "instance": request.url.path,
    }
    if detail is not None:
        body["detail"] = detail
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers)


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses=` entries documenting problem answers."""
    # `model` registers the Problem component (FastAPI files it under application/json too);
    # the media type actually sent references it, so clients and schemathesis can check bodies.
    return {
        status: {
            "model": Problem,
            "content": {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": PROBLEM_SCHEMA_REF}}},
            "description": code,
        }
        for status in statuses
        for code in [_HTTP_CODES.get(status, "error")]
    }


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(part) for part in loc]
    if parts and parts[0] in {"body", "query", "path", "header"}:
        parts = parts[1:] or parts
    return ".".join(parts)


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


def _allowed_methods(request: Request, fallback: str) -> str:
    """Every method served at the request's path. Starlette's 405 names only the first route
    whose path matched, but each FastAPI operation is a route of its own: the OpenAPI document
    (built once, then cached by FastAPI) knows them all."""
    methods: set[str] = set()
    for template, item in request.app.openapi().get("paths", {}).items():
        if compile_path(template)[0].match(request.scope["path"]):
            methods.update(method.upper() for method in item if method in _HTTP_METHODS)
    if "GET" in methods:
        methods.add("HEAD")
    return ", ".join(sorted(methods)) or fallback


def install_problem_handlers(app: FastAPI) -> None:
    """Make every error of `app` a problem document."""

    @app.exception_handler(ProblemError)
    async def _problem(request: Request, exc: ProblemError) -> JSONResponse:
        return problem_response(
            request,
            status=exc.status,
            code=exc.code,
            title=exc.title,
            detail=exc.detail,
            headers=exc.headers,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field_path(err.get("loc", ())), "message": err.get("msg", "invalid")}
            for err in exc.errors()
        ]
        fields = ", ".join(sorted({e["field"] for e in errors})) or "request"
        return problem_response(
            request,
            status=422,
            code="validation_failed",
            title="The request is not valid",
            detail=f"invalid or missing: {fields}",
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else None
        headers = getattr(exc, "headers", None)
        if exc.status_code == 405:
            allowed = _allowed_methods(request, (headers or {}).get("Allow", ""))
            headers = {**(headers or {}), "Allow": allowed}
        return problem_response(
            request,
            status=exc.status_code,
            code=code,
            title=detail or code.replace("_", " "),
            detail=detail,
            headers=headers,
        )

    @app.exception_handler(OperationalError)
    @app.exception_handler(InterfaceError)
    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        log.error(
            "database unavailable on %s %s: %s",
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        return problem_response(
            request,
            status=503,
            code="database_unavailable",
            title="The database is unavailable",
            detail="nothing was stored; retry later",
            headers={"Retry-After": str(DATABASE_RETRY_AFTER_SECONDS)},
        )

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        # Starlette calls this outside every middleware: RequestIdMiddleware has already ended
        # the request's log context, so the id comes back from the request's state.
        request_id: str | None = getattr(request.state, "request_id", None)
        token = logs.enter_request(request_id) if request_id else None
        try:
            log.exception("unhandled error on %s %s", request.method, request.url.path)
        finally:
            if token is not None:
                logs.leave_request(token)
        return problem_response(
            request,
            status=500,
            code="internal_error",
            title="Internal error",
            detail="calbridge failed to handle this request; the error is logged",
            headers={"X-Request-ID": request_id} if request_id else None,
        )
