"""Graph failures become the right queue decisions."""

from __future__ import annotations

from app.graph import errors
from app.queue.errors import PermanentError, RetryAfter
from app.sync.retry import job_error


def test_throttled_retries_exactly_and_throttles_the_mailbox() -> None:
    decision = job_error(errors.Throttled("slow down", retry_after=2.5, concurrency=False))
    assert isinstance(decision, RetryAfter)
    assert decision.seconds == 2.5 and decision.throttle_mailbox


def test_unavailable_with_retry_after_waits_without_throttling_the_mailbox() -> None:
    decision = job_error(errors.Transient("503", retry_after=7.0))
    assert isinstance(decision, RetryAfter)
    assert decision.seconds == 7.0 and not decision.throttle_mailbox


def test_transient_without_retry_after_is_left_to_the_backoff() -> None:
    error = errors.Transient("connection reset")
    assert job_error(error) is error


def test_permanent_errors_fail_at_once_with_their_message() -> None:
    error = errors.MailboxNotFound("User d.wellt@contoso.com is invalid", mailbox="d.wellt@x")
    decision = job_error(error)
    assert isinstance(decision, PermanentError)
    assert "d.wellt@contoso.com" in str(decision)
