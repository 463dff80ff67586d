"""app/logs.py on its own: the JSON and text formatters, the context they carry, redaction,
request-id validation, the request-id middleware and configure_logging(); and the one
long-lived task started inside a request (the group commit) not inheriting its context."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy.exc import IntegrityError

from app import logs
from app.config import Settings
from app.http.problems import install_problem_handlers

JWT = "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
ENTRA_SECRET = "Xy48Q~Jf3Gy8Nq2Lx5Rk9Tm1Wp4Zs7Hc0abcdefg"
WHSEC = "whsec_Y2FsYnJpZGdlLXRlc3Qtd2ViaG9vay1zZWNyZXQtMzI="
FERNET = "gAAAAABnQ2x1ZmVybmV0LXRva2VuLWNpcGhlcnRleHQtdmFsdWU="


def _record(
    message: str,
    *args: Any,
    level: int = logging.INFO,
    exc_info: Any = None,
    name: str = "app.test",
) -> logging.LogRecord:
    return logging.LogRecord(name, level, __file__, 1, message, args, exc_info)


def _formatted(formatter: logging.Formatter, record: logging.LogRecord) -> str:
    logs.ContextFilter().filter(record)
    return formatter.format(record)


@pytest.fixture
def clean_context() -> Iterator[None]:
    token = logs._context.set({})
    try:
        yield
    finally:
        logs._context.reset(token)


# Formatters ------------------------------------------------------------------------------------


def test_json_line_has_the_fields_and_the_context(clean_context: None) -> None:
    logs.bind_job(job_id=42, job_kind="sync.appointment", mailbox="max@contoso.example")
    logs.bind(organization_id="f6Org", employee_id="brMax", ignored=None)
    record = _record("job %s: %s", 42, "done", level=logging.WARNING)

    line = _formatted(logs.JsonFormatter(), record)

    assert "\n" not in line
    data = json.loads(line)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", data["ts"])
    assert data == {
        "ts": data["ts"],
        "level": "WARNING",
        "logger": "app.test",
        "message": "job 42: done",
        "job_id": 42,
        "job_kind": "sync.appointment",
        "organization_id": "f6Org",
        "employee_id": "brMax",
        "mailbox": "max@contoso.example",
    }
    # The context fields come in a fixed order, whatever the binding order was.
    assert list(data)[4:] == ["job_id", "job_kind", "organization_id", "employee_id", "mailbox"]


def test_json_line_carries_the_traceback_redacted_and_stays_one_line(clean_context: None) -> None:
    try:
        raise RuntimeError(f"token refused: access_token={JWT}")
    except RuntimeError:
        record = _record("sync failed", level=logging.ERROR, exc_info=sys.exc_info())

    line = _formatted(logs.JsonFormatter(), record)

    assert len(line.splitlines()) == 1
    data = json.loads(line)
    assert data["message"] == "sync failed"
    assert data["exc"].startswith("Traceback (most recent call last):")
    assert "RuntimeError: token refused" in data["exc"]
    assert JWT not in line and JWT[:20] not in line
    assert "request_id" not in data


def test_text_line_is_readable_with_the_context_as_key_value(clean_context: None) -> None:
    logs.bind(request_id="abc123", organization_id="f6 Org")
    try:
        raise ValueError("bad")
    except ValueError:
        record = _record("refused: %s", "invalid_signature", exc_info=sys.exc_info())

    text = _formatted(logs.TextFormatter(), record)

    first, *rest = text.splitlines()
    assert re.fullmatch(
        r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z INFO    app\.test: refused: invalid_signature"
        r'  request_id=abc123 organization_id="f6 Org"',
        first,
    )
    assert rest[0] == "Traceback (most recent call last):"
    assert rest[-1] == "ValueError: bad"


def test_context_is_read_where_the_record_is_made() -> None:
    async def run() -> list[dict[str, Any]]:
        stream = io.StringIO()
        handler = logs.build_handler(stream, "json")
        logger = logging.getLogger("tests.logs.tasks")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
        logger.propagate = False

        async def job(job_id: int) -> None:
            logs.bind_job(job_id=job_id, job_kind="k")
            await asyncio.sleep(0)
            # A thread started from the task (MSAL runs in one) sees the task's context.
            await asyncio.to_thread(logger.info, "in a thread")
            logger.info("in the task")

        try:
            logs.bind(request_id="outer")
            await asyncio.gather(job(1), job(2))
            logger.info("after")
        finally:
            logger.removeHandler(handler)
            logger.propagate = True
        return [json.loads(line) for line in stream.getvalue().splitlines()]

    lines = asyncio.run(run())
    by_job = sorted((line.get("job_id"), line["message"]) for line in lines[:-1])
    assert by_job == [
        (1, "in a thread"),
        (1, "in the task"),
        (2, "in a thread"),
        (2, "in the task"),
    ]
    # bind_job started afresh: no request id leaked into the jobs, none of theirs out of them.
    assert all("request_id" not in line for line in lines[:-1])
    assert lines[-1]["request_id"] == "outer" and "job_id" not in lines[-1]


# Redaction -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"Authorization: Bearer {JWT}", JWT),
        ("{'authorization': 'Basic dXNlcjpwYXNzd29yZA=='}", "dXNlcjpwYXNzd29yZA=="),
        ("headers={'Authorization': 'Bearer opaque-token-value-123'}", "opaque-token-value-123"),
        ("bearer 0123456789abcdef0123", "0123456789abcdef0123"),
        (f"token {JWT} rejected", JWT),
        (f"truncated {JWT[:30]}", JWT[:30]),
        (f"webhook secret {WHSEC}", WHSEC.removeprefix("whsec_")),
        (f"secret {ENTRA_SECRET} was sent", ENTRA_SECRET),
        (f"stored {FERNET}", FERNET.removeprefix("gAAAAA")),
        ("grant_type=client_credentials&client_secret=s3cr3t-value&scope=x", "s3cr3t-value"),
        ('{"client_secret": "s3cr3t-value"}', "s3cr3t-value"),
        ('{"clientState": "state-7f3a9c"}', "state-7f3a9c"),
        ("client_state=state-7f3a9c", "state-7f3a9c"),
        ("CALBRIDGE_SECRET_KEY=a2V5LWtleS1rZXk=", "a2V5LWtleS1rZXk="),
        ("CALBRIDGE_ADMIN_TOKEN='adm-tok-999'", "adm-tok-999"),
        ("{'access_token': 'at-123', 'expires_in': 3599}", "at-123"),
        ("password=hunter2", "hunter2"),
    ],
)
def test_redaction_masks_credentials(text: str, secret: str) -> None:
    redacted = logs.redact(text)
    assert secret not in redacted
    assert logs.REDACTED in redacted


@pytest.mark.parametrize(
    "text",
    [
        "job 12 sync.appointment: done",
        "subscription of max@contoso.example created (recreate=False)",
        "client secret of connection f6Org expires within 7 day(s), at 2027-01-01",
        "secret_state=expiring client_secret_expires_at=2027-01-01 token_requests=3",
        "graph notifications: dropped 2 of 3 items (client_state=1, unknown_subscription=1)",
        "basic information about the bearer of this mailbox",
    ],
)
def test_redaction_leaves_operational_text_alone(text: str) -> None:
    if "client_state=1" in text:
        assert logs.redact(text).startswith("graph notifications: dropped 2 of 3 items")
    # A count after a secret's key name is a count (the reasons notifications were dropped for):
    # the line keeps it, and its closing parenthesis.
    assert logs.redact(text) == text


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # The forged-notification line, as app/notifications/intake.py writes it.
        (
            "graph notifications: dropped 1 of 1 items (client_state=1)",
            "graph notifications: dropped 1 of 1 items (client_state=1)",
        ),
        (
            "graph notifications: dropped 3 of 5 items (client_state=2, unknown_subscription=1)",
            "graph notifications: dropped 3 of 5 items (client_state=2, unknown_subscription=1)",
        ),
        (
            "dropped (client_state=state-7f3a9c) from 10.0.0.1",
            f"dropped (client_state={logs.REDACTED}) from 10.0.0.1",
        ),
        ("[client_secret=s3cr3t-value] sent", f"[client_secret={logs.REDACTED}] sent"),
        ("<token=abc123> seen", f"<token={logs.REDACTED}> seen"),
        (
            'retry {"password": "a b, c", "user": "max"} later',
            f'retry {{"password": "{logs.REDACTED}", "user": "max"}} later',
        ),
        (
            "headers={'Authorization': 'Bearer opaque-token-value-123', 'Accept': '*/*'}",
            f"headers={{'Authorization': '{logs.REDACTED}', 'Accept': '*/*'}}",
        ),
        (
            "call (Authorization: Basic dXNlcjpwYXNzd29yZA==) refused",
            f"call (Authorization: {logs.REDACTED}) refused",
        ),
        (f"got {JWT}. Next", f"got eyJ{logs.REDACTED}. Next"),
        (
            "client_state=12345678 (too long to be a count)",
            f"client_state={logs.REDACTED} (too long to be a count)",
        ),
        (
            "boom\n[parameters: ('x', 'y')]\n(Background on this error at: https://sqlalche.me/e)",
            f"boom\n[parameters: {logs.REDACTED}]\n(Background on this error at: https://sqlalche.me/e)",
        ),
    ],
)
def test_redaction_masks_only_the_secret(text: str, expected: str) -> None:
    """The mask covers the value and nothing after it: counts, brackets, the next field and
    the rest of the line stay readable."""
    assert logs.redact(text) == expected


def test_short_reason_is_one_redacted_line_of_about_200_characters() -> None:
    exc = RuntimeError(f"Graph said\n  client_secret={ENTRA_SECRET} and " + "y" * 1000)
    reason = logs.short_reason(exc)
    assert reason.startswith(f"RuntimeError: Graph said client_secret={logs.REDACTED} and yyy")
    assert ENTRA_SECRET not in reason and "\n" not in reason
    assert len(reason) <= logs.REASON_LIMIT
    assert logs.short_reason(TimeoutError()) == "TimeoutError"
    # Redacted before it is cut: a JWT at the cut is not left half-recognisable.
    cut = logs.short_reason(ValueError("x" * 180 + f" {JWT}"))
    assert JWT[:6] not in cut


def test_database_errors_lose_their_parameters(clean_context: None) -> None:
    statement = "INSERT INTO inbox_event (payload) VALUES (?)"
    payload = '{"customer": {"email": "w.quasthoff@kundin.example", "mobile": "+4917098"}}'
    try:
        raise IntegrityError(statement, (payload,), Exception("UNIQUE constraint failed"))
    except IntegrityError:
        record = _record("unhandled error on POST /webhooks", exc_info=sys.exc_info())

    for formatter in (logs.JsonFormatter(), logs.TextFormatter()):
        line = _formatted(formatter, record)
        assert "kundin.example" not in line and "+4917098" not in line
        assert "UNIQUE constraint failed" in line  # the error itself stays readable
        assert "INSERT INTO inbox_event" in line
        assert f"[parameters: {logs.REDACTED}]" in line


def test_formatters_redact_message_and_args(clean_context: None) -> None:
    record = _record("token response %s for %s", {"access_token": JWT}, "max@contoso.example")
    for formatter in (logs.JsonFormatter(), logs.TextFormatter()):
        line = _formatted(formatter, record)
        assert JWT not in line
        assert "max@contoso.example" in line


# Request ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "kept"),
    [
        (b"abc-123_DEF.x", True),
        (b"x" * 64, True),
        (b"x" * 65, False),
        (b"", False),
        (b"has space", False),
        (b"new\nline", False),
        (b"<script>", False),
        ("caf\u00e9".encode(), False),
        (None, False),
    ],
)
def test_request_id_validation(value: bytes | None, kept: bool) -> None:
    result = logs.valid_request_id(value)
    assert (result is not None) is kept
    if kept:
        assert value is not None and result == value.decode()


def _app_with_routes(records: list[logging.LogRecord]) -> FastAPI:
    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(logs.RequestIdMiddleware)
    logger = logging.getLogger("tests.logs.app")
    logger.setLevel(logging.INFO)

    @app.get("/hello")
    async def hello() -> dict[str, Any]:
        logs.bind(organization_id="f6Org")
        logger.info("hello")
        return dict(logs.current_context())

    @app.get("/boom")
    async def boom() -> None:
        raise RuntimeError("boom")

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep()
    handler.addFilter(logs.ContextFilter())
    logging.getLogger().addHandler(handler)
    app.state.handler = handler
    return app


async def test_middleware_keeps_a_valid_id_and_replaces_anything_else(clean_context: None) -> None:
    records: list[logging.LogRecord] = []
    app = _app_with_routes(records)
    try:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            kept = await client.get("/hello", headers={"X-Request-ID": "from-the-proxy.1"})
            invalid = await client.get("/hello", headers={"X-Request-ID": "bad id<>" * 3})
            fresh = await client.get("/hello")
            failed = await client.get("/boom", headers={"X-Request-ID": "boom-1"})
    finally:
        logging.getLogger().removeHandler(app.state.handler)

    assert kept.headers["x-request-id"] == "from-the-proxy.1"
    assert kept.json() == {"request_id": "from-the-proxy.1", "organization_id": "f6Org"}
    replaced = invalid.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", replaced)
    assert invalid.json()["request_id"] == replaced
    generated = fresh.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated) and generated != replaced
    # One header, not two.
    assert len(fresh.headers.get_list("x-request-id")) == 1
    # An unhandled error: the 500 answer and its log line carry the id as well.
    assert failed.status_code == 500
    assert failed.headers["x-request-id"] == "boom-1"
    unhandled = [r for r in records if r.getMessage().startswith("unhandled error")]
    assert [r.calbridge_context for r in unhandled] == [{"request_id": "boom-1"}]
    hello = [r.calbridge_context for r in records if r.getMessage() == "hello"]
    assert hello[0] == {"request_id": "from-the-proxy.1", "organization_id": "f6Org"}
    # The request's context ended with it (httpx's ASGITransport runs the app in this task).
    assert logs.current_context() == {}


async def test_middleware_leaves_lifespan_and_websocket_scopes_alone() -> None:
    seen: list[str] = []

    async def inner(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope["type"])

    middleware = logs.RequestIdMiddleware(inner)
    await middleware({"type": "lifespan"}, None, None)  # type: ignore[arg-type]
    assert seen == ["lifespan"]


# configure_logging ------------------------------------------------------------------------------


@contextmanager
def saved_logging() -> Iterator[None]:
    """Logging's global state as it was before the block: levels, handlers, propagation."""
    root = logging.getLogger()
    names = [*logs.UVICORN_LOGGERS, *logs.CHATTY_LOGGERS, *logs.SQL_LOGGERS]
    level, handlers = root.level, list(root.handlers)
    saved = {
        name: (logger.level, list(logger.handlers), logger.propagate)
        for name in names
        for logger in [logging.getLogger(name)]
    }
    try:
        yield
    finally:
        root.setLevel(level)
        root.handlers[:] = handlers
        for name, (lvl, hs, propagate) in saved.items():
            logger = logging.getLogger(name)
            logger.setLevel(lvl)
            logger.handlers[:] = hs
            logger.propagate = propagate


@pytest.fixture
def restore_logging() -> Iterator[None]:
    with saved_logging():
        yield


def _settings(**values: Any) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


class _Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_settings_read_format_and_level(monkeypatch: pytest.MonkeyPatch) -> None:
    assert (_settings().log_format, _settings().log_level) == ("auto", "INFO")
    monkeypatch.setenv("CALBRIDGE_LOG_FORMAT", "JSON")
    monkeypatch.setenv("CALBRIDGE_LOG_LEVEL", "debug")
    assert (_settings().log_format, _settings().log_level) == ("json", "DEBUG")
    monkeypatch.setenv("CALBRIDGE_LOG_FORMAT", "xml")
    with pytest.raises(ValueError, match="log_format"):
        _settings()


def test_auto_is_text_on_a_terminal_and_json_elsewhere(restore_logging: None) -> None:
    tty, pipe = _Tty(), io.StringIO()
    logs.configure_logging(_settings(), stream=tty)
    logging.getLogger("app.x").info("to the terminal")
    logs.configure_logging(_settings(), stream=pipe)
    logging.getLogger("app.x").info("to a pipe")

    assert " INFO    app.x: to the terminal" in tty.getvalue()
    assert json.loads(pipe.getvalue())["message"] == "to a pipe"
    # Configured twice, one handler: the first one was replaced.
    ours = [h for h in logging.getLogger().handlers if isinstance(h, logs.LogHandler)]
    assert len(ours) == 1


def test_uvicorn_and_chatty_libraries_go_through_the_one_handler(restore_logging: None) -> None:
    # As uvicorn's default configuration leaves them: own handlers and levels, not propagating.
    for name in ("uvicorn", "uvicorn.access"):
        logging.getLogger(name).addHandler(logging.StreamHandler(io.StringIO()))
        logging.getLogger(name).propagate = False
    logging.getLogger("uvicorn.error").setLevel(logging.WARNING)
    stream = io.StringIO()
    logs.configure_logging(_settings(log_format="json", log_level="INFO"), stream=stream)

    logging.getLogger("uvicorn.error").info("Started server process [1]")
    logging.getLogger("uvicorn.access").info(
        '%s - "%s %s HTTP/%s" %d', "1.2.3.4", "GET", "/", "1.1", 200
    )
    logging.getLogger("httpx").info("HTTP Request: POST https://login.example/token")
    logging.getLogger("msal.token_cache").debug("event=...")
    logging.getLogger("httpx").warning("a warning still shows")

    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert [(line["logger"], line["message"]) for line in lines] == [
        ("uvicorn.error", "Started server process [1]"),
        ("uvicorn.access", '1.2.3.4 - "GET / HTTP/1.1" 200'),
        ("httpx", "a warning still shows"),
    ]
    assert all(not logging.getLogger(n).handlers for n in logs.UVICORN_LOGGERS)

    logs.configure_logging(_settings(log_format="json", log_level="DEBUG"), stream=stream)
    assert all(
        logging.getLogger(n).getEffectiveLevel() == logging.DEBUG for n in logs.CHATTY_LOGGERS
    )
