"""Puts the bookingtime emulator into the sandbox's app: its auth server and App API routes (kept
out of the control API's OpenAPI document), and the failures it answers with."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException

from app.sandbox.bookingtime import appointments, auth, availability_exceptions, resources
from app.sandbox.bookingtime.envelope import (
    NOT_VALID,
    TOKEN_PATH,
    AuthError,
    BookingtimeError,
    auth_failure,
    failure,
)

ROUTERS = (auth.router, appointments.router, resources.router, availability_exceptions.router)


async def _on_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, BookingtimeError)
    return failure(exc)


async def _on_auth_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, AuthError)
    return auth_failure(exc)


def install(app: FastAPI) -> None:
    for router in ROUTERS:
        app.include_router(router, include_in_schema=False)
    app.add_exception_handler(BookingtimeError, _on_error)
    app.add_exception_handler(AuthError, _on_auth_error)


def http_failure(request: Request, exc: HTTPException) -> Response:
    """Routing failures on bookingtime paths: 405 for a known route's wrong method, else 404."""
    headers = dict(exc.headers or {})
    if request.url.path.startswith(TOKEN_PATH):
        if exc.status_code == 405:
            error = AuthError(405, "invalid_request", f"Method {request.method} is not allowed.")
            return auth_failure(error)
        return auth_failure(AuthError(exc.status_code, "invalid_request", str(exc.detail)))
    if exc.status_code == 405:
        return failure(BookingtimeError(405, "Method not allowed.", headers=headers))
    if exc.status_code == 404:
        return failure(
            BookingtimeError(404, f'No route found for "{request.method} {request.url.path}"')
        )
    return failure(BookingtimeError(exc.status_code, str(exc.detail), headers=headers))


def validation_failure(request: Request, exc: RequestValidationError) -> Response:
    """A path or body value FastAPI could not read: 400 naming the parameter."""
    errors = exc.errors()
    location = errors[0].get("loc", ()) if errors else ()
    parameter = str(location[-1]) if location else None
    return failure(BookingtimeError(400, NOT_VALID, parameter=parameter))
