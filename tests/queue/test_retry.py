"""The retry decision (app/queue/retry.py): how a run that raised ends, from the exception alone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.graph.errors import (
    AccessDenied,
    AuthenticationFailed,
    ItemNotFound,
    MailboxNotFound,
    Throttled,
    Transient,
    UnexpectedGraphError,
)
from app.queue.errors import PermanentError, RetryAfter
from app.queue.retry import Decision, RetryStrategy

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
# No jitter: a backoff retry lands on the lower bound.
STRATEGY = RetryStrategy(base_seconds=2, max_seconds=60, random=lambda: 0.0)


def decide(error: BaseException, attempt: int = 1, max_attempts: int = 3) -> Decision:
    return STRATEGY.decide(error, attempt=attempt, max_attempts=max_attempts, now=NOW)


def test_any_other_exception_backs_off_then_is_dead() -> None:
    assert decide(ConnectionError("reset")) == Decision("retry", run_at=NOW + timedelta(seconds=1))
    assert decide(ValueError("x"), attempt=2) == Decision(
        "retry", run_at=NOW + timedelta(seconds=2)
    )
    assert decide(ValueError("x"), attempt=3) == Decision("dead")


def test_permanent_fails_at_once_on_any_attempt() -> None:
    assert decide(PermanentError("invalid mailbox")) == Decision("failed")
    assert decide(PermanentError("invalid mailbox"), attempt=3) == Decision("failed")


def test_retry_after_is_exact_and_may_throttle_the_mailbox() -> None:
    assert decide(RetryAfter(30)) == Decision("retry", run_at=NOW + timedelta(seconds=30))
    at = NOW + timedelta(hours=1)
    assert decide(RetryAfter(at=at, throttle_mailbox=True)) == Decision(
        "retry", run_at=at, throttle_until=at
    )
    assert decide(RetryAfter(30), attempt=3) == Decision("dead")  # out of attempts all the same


class _Duck(Exception):
    """Another package's error speaking the protocol without the queue's classes."""

    def __init__(self, **attributes: object) -> None:
        super().__init__("duck")
        for name, value in attributes.items():
            setattr(self, name, value)


@pytest.mark.parametrize(
    ("attributes", "expected"),
    [
        ({"permanent": True, "retry_after": 5.0}, Decision("failed")),
        ({"permanent": False}, Decision("retry", run_at=NOW + timedelta(seconds=1))),
        ({"retry_after": 5}, Decision("retry", run_at=NOW + timedelta(seconds=5))),
        (
            {"retry_after": 5.5, "throttles_mailbox": True},
            Decision(
                "retry",
                run_at=NOW + timedelta(seconds=5.5),
                throttle_until=NOW + timedelta(seconds=5.5),
            ),
        ),
        # Only a real True counts, and only a number or an aware datetime names a time.
        ({"permanent": "yes"}, Decision("retry", run_at=NOW + timedelta(seconds=1))),
        ({"retry_after": "5"}, Decision("retry", run_at=NOW + timedelta(seconds=1))),
        ({"retry_after": -3.0}, Decision("retry", run_at=NOW)),
        ({"throttles_mailbox": True}, Decision("retry", run_at=NOW + timedelta(seconds=1))),
    ],
)
def test_any_exception_speaks_the_protocol_by_its_attributes(
    attributes: dict[str, object], expected: Decision
) -> None:
    assert decide(_Duck(**attributes)) == expected


def test_graph_errors_are_understood_as_they_are_raised() -> None:
    throttled = Throttled("429", retry_after=12.0, concurrency=False, status=429)
    later = NOW + timedelta(seconds=12)
    assert decide(throttled) == Decision("retry", run_at=later, throttle_until=later)
    # A 503 with Retry-After waits exactly that long, for this job alone.
    assert decide(Transient("503", retry_after=4.0, status=503)) == Decision(
        "retry", run_at=NOW + timedelta(seconds=4)
    )
    assert decide(Transient("reset")) == Decision("retry", run_at=NOW + timedelta(seconds=1))
    for permanent in (
        MailboxNotFound("unknown mailbox"),
        AccessDenied("no consent", reason="consent_missing"),
        AuthenticationFailed("bad secret", kind="invalid_secret"),
        ItemNotFound("gone"),
        UnexpectedGraphError("bad request", status=400),
    ):
        assert decide(permanent) == Decision("failed"), permanent
    assert decide(AuthenticationFailed("AADSTS50000", kind="other")).outcome == "retry"
    assert decide(UnexpectedGraphError("bad gateway", status=502)).outcome == "retry"
    assert decide(throttled, attempt=3) == Decision("dead")
