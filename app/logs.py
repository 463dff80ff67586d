"""Structured logs: one JSON object per line in production, readable lines in a terminal, each
carrying the request or job it belongs to (and the organisation and employee where known), with
anything shaped like a secret masked as a last line of defence.

Context lives in one contextvar, so it follows asyncio tasks and `asyncio.to_thread`:
`RequestIdMiddleware` binds `request_id` per HTTP request, the worker binds `job_id`/`job_kind`
per job, and code that learns the organisation or employee adds them with `bind()`.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import sys
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal, TextIO

if TYPE_CHECKING:
    from starlette.types import ASGIApp, Message, Receive, Scope, Send

    from app.config import Settings

LogFormat = Literal["auto", "json", "text"]

#: Order of the context fields in a line; anything bound beyond them follows.
CONTEXT_FIELDS = ("request_id", "job_id", "job_kind", "organization_id", "employee_id", "mailbox")
#: Loggers of libraries that talk too much at INFO (every HTTP request) and, at DEBUG, about
#: token acquisition: WARNING unless calbridge itself logs at DEBUG.
CHATTY_LOGGERS = ("msal", "httpx", "httpcore", "urllib3")
#: Loggers that, at DEBUG, print SQL parameters: webhook payloads with customer contact details
#: and encrypted secrets. WARNING whatever the level.
SQL_LOGGERS = ("sqlalchemy", "aiosqlite", "psycopg")
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID = re.compile(rb"[A-Za-z0-9._-]{1,64}")
REDACTED = "[redacted]"

_NOTHING: Mapping[str, Any] = MappingProxyType({})
_context: ContextVar[Mapping[str, Any]] = ContextVar("calbridge_log_context", default=_NOTHING)


# Context ----------------------------------------------------------------------------------------


def bind(**fields: str | int | None) -> None:
    """Add fields (None values are skipped) to every later log line of this task or request."""
    new = {key: value for key, value in fields.items() if value is not None}
    if new:
        _context.set({**_context.get(), **new})


def bind_job(*, job_id: int, job_kind: str, mailbox: str | None = None) -> None:
    """Start a job's context afresh: whatever request or job spawned this task is not it."""
    fields: dict[str, Any] = {"job_id": job_id, "job_kind": job_kind}
    if mailbox:
        fields["mailbox"] = mailbox
    _context.set(fields)


def current_context() -> Mapping[str, Any]:
    """The fields bound for the running task (read-only)."""
    return _context.get()


def valid_request_id(value: bytes | None) -> str | None:
    """An incoming X-Request-ID worth keeping (up to 64 of `A-Za-z0-9._-`), else None."""
    if value is not None and _REQUEST_ID.fullmatch(value):
        return value.decode("ascii")
    return None


# A random prefix per process and a counter: unique across processes without drawing a uuid4
# per request.
_REQUEST_ID_PREFIX = os.urandom(8).hex()
_request_ids = itertools.count(1)


def new_request_id() -> str:
    """32 hex characters, unique across processes."""
    return f"{_REQUEST_ID_PREFIX}{next(_request_ids):016x}"


def request_id_of(scope: Scope) -> str:
    """The request's own valid X-Request-ID, or a new id."""
    for name, value in scope["headers"]:
        if name == REQUEST_ID_HEADER:
            return valid_request_id(value) or new_request_id()
    return new_request_id()


def enter_request(request_id: str) -> Token[Mapping[str, Any]]:
    """Start a request's context (its log lines carry `request_id`); undo with `leave_request`."""
    return _context.set({"request_id": request_id})


def leave_request(token: Token[Mapping[str, Any]]) -> None:
    _context.reset(token)


class RequestIdMiddleware:
    """Binds a request id for the request's log lines and returns it as `X-Request-ID`.

    Starlette answers an unhandled error outside every middleware, after this one has ended the
    request's context, so the id also stays in the request's state (`request.state.request_id`)
    for that answer and its log line.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(scope)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (REQUEST_ID_HEADER, request_id.encode("ascii"))

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = enter_request(request_id)
        try:
            await self.app(scope, receive, send_with_id)
        finally:
            # In-process clients (httpx's ASGITransport) run the app in the caller's task: the
            # request's context must not outlive the request there.
            leave_request(token)


# Redaction --------------------------------------------------------------------------------------

_TOKENISH = r"[A-Za-z0-9._~+/=-]"
# A value after `key=` or `key: `, and nothing beyond it: a quoted value up to its closing quote
# (commas and spaces included), an unquoted one up to the first space, separator or bracket, so
# the text around it (a closing parenthesis, the next field) stays readable.
_VALUE = r"""(?:"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*'|['"]?[^\s'"&,;(){}\[\]<>]+)"""
# Counts (`client_state=2` among the reasons notifications were dropped) are no credential.
_COUNT = r"\d{1,6}(?![^\s'\"&,;(){}\[\]<>])"


def _masked_value(match: re.Match[str]) -> str:
    """The key as it was, the value replaced (inside its quotes, when it had them)."""
    value = match.group(2)
    quote = value[0] if value[0] in "'\"" else ""
    closing = quote if quote and len(value) > 1 and value.endswith(quote) else ""
    return f"{match.group(1)}{quote}{REDACTED}{closing}"


_REDACTIONS: tuple[tuple[re.Pattern[str], str | Callable[[re.Match[str]], str]], ...] = (
    # `Authorization: Bearer x`, `'authorization': 'Basic x'`: the whole credential.
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization['\"]?\s*[:=][ \t]*)"
            rf"((?:['\"]?[A-Za-z]+[ \t]+[^\s'\"&,;(){{}}\[\]<>]+['\"]?)|{_VALUE})"
        ),
        _masked_value,
    ),
    (re.compile(rf"(?i)\b(bearer)\s+{_TOKENISH}{{16,}}"), rf"\1 {REDACTED}"),
    # key=value, "key": "value", 'key': 'value' for keys that name a secret (any prefix:
    # CALBRIDGE_SECRET_KEY=…), never keys that merely mention one (secret_state=ok).
    (
        re.compile(
            r"(?i)(?<![A-Za-z0-9])((?:[A-Za-z0-9]+[_-])*"
            r"(?:client[_-]?secret|client[_-]?state|webhook[_-]?secret|secret[_-]?key|secret"
            r"|admin[_-]?token|access[_-]?token|refresh[_-]?token|id[_-]?token|token"
            r"|validation[_-]?token|password)['\"]?\s*[:=][ \t]*)"
            rf"(?!{_COUNT})({_VALUE})"
        ),
        _masked_value,
    ),
    # JWTs (Entra access tokens), whole or in part; a full stop after one stays.
    (re.compile(r"\beyJ[A-Za-z0-9_-]{6,}(?:\.[A-Za-z0-9_-]+){0,2}"), f"eyJ{REDACTED}"),
    # Standard Webhooks secrets.
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=_-]+"), f"whsec_{REDACTED}"),
    # Entra client secret values (3 characters, a digit, `Q~`, then 31 to 34 more).
    (re.compile(r"(?<![A-Za-z0-9_~.-])[A-Za-z0-9_~.-]{3}\dQ~[A-Za-z0-9_~.-]{31,34}"), REDACTED),
    # SQLAlchemy's errors quote the statement's parameters (webhook payloads, customer contact)
    # on a line of their own: that line goes, the lines around it stay.
    (re.compile(r"(?m)^\[parameters: .*$"), f"[parameters: {REDACTED}]"),
    # Fernet tokens: secrets at rest, nothing to show either.
    (re.compile(r"\bgAAAAA[A-Za-z0-9_=-]{20,}"), f"gAAAAA{REDACTED}"),
)
# Cheap pre-check: most lines contain none of these, and skip every regex.
_SUSPECT = re.compile(
    r"(?i)authoriz|bearer|secret|state|token|password|eyJ|whsec_|Q~|gAAAAA|\[parameters: "
)


def redact(text: str) -> str:
    """`text` with anything that looks like a credential masked."""
    if not _SUSPECT.search(text):
        return text
    for pattern, replacement in _REDACTIONS:
        text = pattern.sub(replacement, text)
    return text


REASON_LIMIT = 200


def short_reason(exc: BaseException, limit: int = REASON_LIMIT) -> str:
    """`ExceptionClass: message` on one line, redacted, then cut to about `limit` characters: enough
    for a log line to say why a job failed, not a whole response body. Redacted before it is cut,
    so a cut never leaves half a secret the patterns no longer recognise."""
    message = " ".join(str(exc).split())
    text = redact(f"{type(exc).__name__}: {message}" if message else type(exc).__name__)
    return text if len(text) <= limit else f"{text[: limit - 1]}…"


# Records and formatters -------------------------------------------------------------------------


class ContextFilter(logging.Filter):
    """Copies the bound context onto each record (in the thread and task that logs it)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "calbridge_context"):
            record.calbridge_context = _context.get()
        return True


def _timestamp(record: logging.LogRecord) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
    return f"{seconds}.{int(record.msecs):03d}Z"


def _context_of(record: logging.LogRecord) -> Mapping[str, Any]:
    # Without ContextFilter (a handler built elsewhere) the formatting thread's context is the
    # best guess; with it, the context where the record was made, even when that was none.
    context: Mapping[str, Any] | None = getattr(record, "calbridge_context", None)
    return _context.get() if context is None else context


def _ordered(context: Mapping[str, Any]) -> list[tuple[str, Any]]:
    known = [(key, context[key]) for key in CONTEXT_FIELDS if key in context]
    return known + [(k, v) for k, v in context.items() if k not in CONTEXT_FIELDS]


class _Formatter(logging.Formatter):
    def message_and_exception(self, record: logging.LogRecord) -> tuple[str, str | None]:
        message = redact(record.getMessage())
        parts = []
        if record.exc_info:
            parts.append(self.formatException(record.exc_info))
        elif record.exc_text:
            parts.append(record.exc_text)
        if record.stack_info:
            parts.append(self.formatStack(record.stack_info))
        return message, redact("\n".join(parts)) if parts else None


class JsonFormatter(_Formatter):
    """One JSON object per line: ts, level, logger, message, the context fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        message, exc = self.message_and_exception(record)
        line: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "message": message,
        }
        for key, value in _ordered(_context_of(record)):
            line.setdefault(key, value)
        if exc is not None:
            line["exc"] = exc
        return json.dumps(line, ensure_ascii=False, default=str)


def _text_value(value: Any) -> str:
    text = str(value)
    if not text or any(c.isspace() or c in "=\"'" for c in text):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(_Formatter):
    """`ts LEVEL logger: message key=value …`, the traceback on the following lines."""

    def format(self, record: logging.LogRecord) -> str:
        message, exc = self.message_and_exception(record)
        context = " ".join(f"{k}={_text_value(v)}" for k, v in _ordered(_context_of(record)))
        line = f"{_timestamp(record)} {record.levelname:<7} {record.name}: {message}"
        if context:
            line = f"{line}  {context}"
        if exc is not None:
            line = f"{line}\n{exc}"
        return line


class LogHandler(logging.StreamHandler[TextIO]):
    """The handler configure_logging() installs on the root logger (and replaces when called
    again)."""


def build_handler(stream: TextIO, log_format: LogFormat = "auto") -> LogHandler:
    """A handler writing to `stream` in `log_format` (`auto`: text on a terminal, else JSON)."""
    if log_format == "auto":
        isatty = getattr(stream, "isatty", None)
        log_format = "text" if isatty is not None and isatty() else "json"
    handler = LogHandler(stream)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    handler.addFilter(ContextFilter())
    return handler


def configure_logging(settings: Settings, *, stream: TextIO | None = None) -> LogHandler:
    """Route every log record (uvicorn's included) through one handler on the root logger, at
    `CALBRIDGE_LOG_LEVEL`, formatted per `CALBRIDGE_LOG_FORMAT`."""
    handler = build_handler(stream or sys.stderr, settings.log_format)
    level = logging.getLevelName(settings.log_level)
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, LogHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    for name in UVICORN_LOGGERS:
        # Whatever uvicorn's own configuration added: its lines go through ours instead.
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.setLevel(logging.NOTSET)
        logger.propagate = True
    for name in CHATTY_LOGGERS:
        logging.getLogger(name).setLevel(logging.NOTSET if level <= logging.DEBUG else "WARNING")
    for name in SQL_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    return handler
