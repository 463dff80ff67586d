"""bookingtime's response bodies: the `{"messageList", "content"}` envelope of the App API, its
failures, the auth server's Auth0-style errors, and what a proxy in front of them answers.

BookingtimeError    an App API failure: status and one failure message naming the parameter
AuthError           an auth server error: `{"error", "error_description"}`
"""

from __future__ import annotations

from typing import Any

from fastapi.responses import JSONResponse

PREFIX = "/bookingtime"
TOKEN_PATH = f"{PREFIX}/oauth/token"
API_PATH = f"{PREFIX}/app/v3"
JSON = "application/json"
TOKEN_HEADERS = {"Cache-Control": "no-store", "Pragma": "no-cache"}

MISSING = "This parameter is missing."  # the SDK's own example failure text
NOT_VALID = "This value is not valid."

# What nginx answers when the application behind it fails, as a proxy would.
HTML_500 = (
    "<html>\r\n<head><title>500 Internal Server Error</title></head>\r\n<body>\r\n"
    "<center><h1>500 Internal Server Error</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)

_FAULT_TEXTS = {
    429: ("too_many_requests", "Too many requests. Please retry later."),
    500: ("server_error", "An internal error occurred. Please try again later."),
    503: ("temporarily_unavailable", "The service is temporarily unavailable."),
    504: ("temporarily_unavailable", "The gateway did not receive a timely response."),
}


class BookingtimeError(Exception):
    def __init__(
        self,
        status: int,
        text: str,
        *,
        parameter: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(f"{status} [{parameter}]: {text}")
        self.status = status
        self.text = text
        self.parameter = parameter
        self.headers = headers or {}


class AuthError(Exception):
    def __init__(self, status: int, error: str, description: str) -> None:
        super().__init__(f"{status} {error}: {description}")
        self.status = status
        self.error = error
        self.description = description


def message(kind: str, text: str, parameter: str | None = None) -> dict[str, Any]:
    return {"class": "MESSAGE", "type": kind, "parameter": parameter, "text": text}


def envelope(content: Any, *, success: str | None = None) -> dict[str, Any]:
    messages = [message("success", success)] if success else []
    return {"messageList": messages, "content": content}


def respond(content: Any, *, status: int = 200, success: str | None = None) -> JSONResponse:
    return JSONResponse(envelope(content, success=success), status_code=status, media_type=JSON)


def failure_body(text: str, parameter: str | None = None) -> dict[str, Any]:
    return {"messageList": [message("failure", text, parameter)], "content": []}


def failure(error: BookingtimeError) -> JSONResponse:
    return JSONResponse(
        failure_body(error.text, error.parameter),
        status_code=error.status,
        headers=error.headers,
        media_type=JSON,
    )


def auth_failure(error: AuthError) -> JSONResponse:
    body = {"error": error.error, "error_description": error.description}
    return JSONResponse(body, status_code=error.status, headers=TOKEN_HEADERS, media_type=JSON)


def fault_body(status: int, path: str) -> dict[str, Any]:
    """An injected 429/500/503/504 in the shape of the service the path belongs to."""
    error, text = _FAULT_TEXTS.get(status, ("server_error", "The request failed."))
    if path.startswith(TOKEN_PATH):
        return {"error": error, "error_description": text}
    return failure_body(text)


def is_bookingtime(path: str) -> bool:
    return path == PREFIX or path.startswith(PREFIX + "/")
