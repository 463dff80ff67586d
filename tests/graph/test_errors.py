"""Every Graph failure from graph-protocol.md lands in its class of the error tree."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import httpx
import pytest

from app.graph.errors import (
    AccessDenied,
    GraphError,
    ItemNotFound,
    MailboxNotFound,
    PreconditionFailed,
    SyncStateNotFound,
    Throttled,
    Transient,
    UnexpectedGraphError,
    parse_retry_after,
)
from app.queue.retry import RetryStrategy
from tests.graph.conftest import graph_error

MAILBOX = "d.wellt@organization.com"
START = datetime(2026, 5, 1, tzinfo=UTC)


async def call(env: Any, op: str) -> None:
    graph = env.graph
    if op == "user":
        await graph.get_user(MAILBOX)
    elif op == "event":
        await graph.get_event(MAILBOX, "AAMkAD=")
    elif op == "create":
        await graph.create_event(MAILBOX, {"subject": "x"}, transaction_id="t", tag="k")
    elif op == "delta":
        await graph.delta_sync(MAILBOX, start=START, end=START + timedelta(days=30))
    elif op == "subscription":
        await graph.renew_subscription("sub-1", START + timedelta(days=2))


CASES = [
    ("user", graph_error(404, "ErrorInvalidUser", f"The requested user '{MAILBOX}' is invalid."),
     MailboxNotFound, True),
    ("create", graph_error(404, "ResourceNotFound", "Resource could not be discovered."),
     MailboxNotFound, True),
    ("delta", graph_error(404, "MailboxNotEnabledForRESTAPI",
     "The mailbox is either inactive, soft-deleted, or is hosted on-premise."), MailboxNotFound,
     True),
    ("event", graph_error(404, "ErrorItemNotFound",
     "The specified object was not found in the store."), ItemNotFound, True),
    ("subscription", graph_error(404, "ResourceNotFound", "Resource not found."), ItemNotFound,
     True),
    ("event", graph_error(412, "ErrorIrresolvableConflict", "The send or update operation could "
     "not be performed because the change key passed in the request does not match the current "
     "change key for the item."), PreconditionFailed, True),
    ("delta", graph_error(410, "syncStateNotFound", "Sync state not found."), SyncStateNotFound,
     True),
    ("delta", graph_error(400, "resyncRequired", "Resync required."), SyncStateNotFound, True),
    ("event", graph_error(503, "serviceNotAvailable", "Service unavailable."), Transient, False),
    ("event", graph_error(504, "UnknownError", ""), Transient, False),
    ("event", graph_error(500, "generalException", "Boom."), Transient, False),
    ("event", graph_error(429, "ApplicationThrottled",
     "Application is over its MailboxConcurrency limit."), Throttled, False),
    ("create", graph_error(400, "ErrorOccurrenceCrossingBoundary", "Crossing."),
     UnexpectedGraphError, True),
    ("event", graph_error(409, "ErrorIrresolvableConflict", "Conflict."), UnexpectedGraphError,
     True),
]  # fmt: skip


@pytest.mark.parametrize(("op", "response", "kind", "permanent"), CASES)
async def test_error_mapped(
    make_env: Any, op: str, response: httpx.Response, kind: type[GraphError], permanent: bool
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return response

    env = await make_env(handler)
    with pytest.raises(kind) as caught:
        await call(env, op)
    error = caught.value
    assert type(error) is kind
    assert error.permanent is permanent
    assert error.retryable is not permanent
    assert error.status == response.status_code
    assert error.code == response.json()["error"]["code"]
    assert error.request_id == response.headers["request-id"]
    assert error.client_request_id == env.sent[-1].headers["client-request-id"]


async def test_mailbox_not_found_is_readable(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(404, "ErrorInvalidUser", f"The requested user '{MAILBOX}' is invalid.")

    env = await make_env(handler)
    with pytest.raises(MailboxNotFound) as caught:
        await env.graph.get_user(MAILBOX)
    assert caught.value.mailbox == MAILBOX
    assert f"User {MAILBOX} is invalid" in str(caught.value)


@pytest.mark.parametrize(
    ("code", "message", "reason"),
    [
        ("ErrorAccessDenied", "Access is denied. Check credentials and try again.",
         "consent_missing"),
        ("ErrorAccessDenied", "Access to OData is disabled.", "access_policy"),
        ("ErrorAccessDenied", "Access to OData is disabled: [RAOP] : Blocked by tenant "
         "configured AppOnly AccessPolicy settings.", "access_policy"),
        ("extensionError", "Extension error.", "access_policy"),
    ],
)  # fmt: skip
async def test_consent_vs_policy(make_env: Any, code: str, message: str, reason: str) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(403, code, message)

    env = await make_env(handler)
    with pytest.raises(AccessDenied) as caught:
        await env.graph.get_event(MAILBOX, "AAMk")
    assert caught.value.reason == reason
    assert caught.value.permanent


async def test_throttled_fractional_retry_after(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(429, "TooManyRequests", "Please retry again later.", Retry_After="2.128")

    env = await make_env(handler)
    with pytest.raises(Throttled) as caught:
        await env.graph.get_event(MAILBOX, "AAMk")
    assert caught.value.retry_after == pytest.approx(2.128)
    assert caught.value.concurrency is False


async def test_throttled_http_date_retry_after(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        when = format_datetime(env.clock.now + timedelta(seconds=90), usegmt=True)
        return graph_error(429, "TooManyRequests", "Please retry again later.", Retry_After=when)

    env = await make_env(handler)
    with pytest.raises(Throttled) as caught:
        await env.graph.get_event(MAILBOX, "AAMk")
    assert caught.value.retry_after == pytest.approx(90)


async def test_throttled_without_retry_after_uses_default(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(
            429, "ApplicationThrottled", "Application is over its MailboxConcurrency limit."
        )

    env = await make_env(handler)
    with pytest.raises(Throttled) as caught:
        await env.graph.get_event(MAILBOX, "AAMk")
    assert caught.value.retry_after == 3.0
    assert caught.value.concurrency is True
    assert env.graph.mailbox_throttled_until(MAILBOX) is None  # no Retry-After: no hold


async def test_503_with_retry_after(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return graph_error(503, "serviceNotAvailable", "Unavailable.", Retry_After="7")

    env = await make_env(handler)
    with pytest.raises(Transient) as caught:
        await env.graph.get_event(MAILBOX, "AAMk")
    assert caught.value.retry_after == 7.0


@pytest.mark.parametrize(
    ("exc", "code", "sent"),
    [
        (httpx.ReadTimeout("read timed out"), "timeout", True),
        (httpx.ConnectTimeout("connect timed out"), "timeout", False),
        (httpx.PoolTimeout("no free connection in time"), "timeout", False),
        (httpx.ConnectError("refused"), "connection_error", False),
        (httpx.RemoteProtocolError("peer closed connection"), "connection_error", True),
        (httpx.ReadError("connection reset by peer"), "connection_error", True),
    ],
)
async def test_network_failures_are_transient(
    make_env: Any, exc: httpx.TransportError, code: str, sent: bool
) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    env = await make_env(handler)
    with pytest.raises(Transient) as caught:
        await env.graph.create_event(MAILBOX, {"subject": "x"}, transaction_id="t", tag="k")
    assert (caught.value.code, caught.value.sent) == (code, sent)
    assert caught.value.client_request_id == env.sent[0].headers["client-request-id"]


async def test_non_json_error_body(make_env: Any) -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(502, text="<html>Bad gateway</html>")

    env = await make_env(handler)
    with pytest.raises(Transient) as caught:
        await env.graph.get_event(MAILBOX, "AAMk")
    assert caught.value.status == 502


def test_parse_retry_after() -> None:
    now = datetime(2026, 5, 5, 12, 0, tzinfo=UTC)
    assert parse_retry_after("10") == 10.0
    assert parse_retry_after(" 2.128 ") == pytest.approx(2.128)
    assert parse_retry_after("Tue, 05 May 2026 12:01:30 GMT", now=now) == 90.0
    assert parse_retry_after("Tue, 05 May 2026 11:00:00 GMT", now=now) == 0.0
    assert parse_retry_after("-3") == 0.0
    for junk in (None, "", "soon", "nan", "inf"):
        assert parse_retry_after(junk) is None


@pytest.mark.parametrize(
    ("error", "outcome", "wait", "holds_mailbox"),
    [
        (
            Throttled("slow down", retry_after=2.5, concurrency=False, status=429),
            "retry",
            2.5,
            True,
        ),
        (Transient("unavailable", retry_after=7.0, status=503), "retry", 7.0, False),
        (Transient("reset", code="connection_error"), "retry", None, False),
        (MailboxNotFound("no such user", mailbox=MAILBOX, status=404), "failed", None, False),
        (UnexpectedGraphError("bad request", status=400), "failed", None, False),
    ],
)
def test_the_queue_decides_a_graph_error_from_its_attributes(
    error: GraphError, outcome: str, wait: float | None, holds_mailbox: bool
) -> None:
    """Graph's errors carry the queue's retry protocol: a handler lets them propagate as is."""
    assert error.throttles_mailbox is holds_mailbox
    assert error.retry_after == wait
    decision = RetryStrategy(random=lambda: 0.0).decide(error, attempt=1, max_attempts=5, now=START)
    assert decision.outcome == outcome
    if outcome == "retry" and wait is not None:
        assert decision.run_at == START + timedelta(seconds=wait)
    if outcome == "retry" and wait is None:
        assert decision.run_at is not None and decision.run_at > START  # backoff
    expected_hold = START + timedelta(seconds=wait) if holds_mailbox and wait else None
    assert decision.throttle_until == expected_hold
