"""Exceptions of the job queue: what a handler raises to steer its retry, and what queue
operations raise to their callers.

JobError                 raised by a handler on purpose
├── RetryAfter           retry at an exact time (seconds or a datetime), no jitter; with
│                        `throttle_mailbox` the job's whole mailbox waits too (Graph's Retry-After)
└── PermanentError       never retry: the job is `failed` at once
any other Exception      transient: retried with backoff, `dead` after max attempts

Both carry the attributes app/queue/retry.py reads from any exception (`permanent`,
`retry_after`, `throttles_mailbox`), so other packages' errors steer a retry the same way.

QueueError               raised by queue operations (admin retry)
├── JobNotFound
├── JobNotRetriable      the job is not `dead` or `failed`
└── DuplicatePendingJob  a pending job with the same dedupe key exists
"""

from __future__ import annotations

from datetime import datetime


class JobError(Exception):
    """Base of the exceptions a handler raises to say how its job ends."""


class RetryAfter(JobError):
    """Run the job again at exactly this time (still counts as an attempt).

    Give `seconds` from now or an aware datetime `at`. With `throttle_mailbox`, no job of the
    job's mailbox is claimed before then either.
    """

    permanent = False

    def __init__(
        self,
        seconds: float | None = None,
        *,
        at: datetime | None = None,
        throttle_mailbox: bool = False,
        message: str | None = None,
    ) -> None:
        self.retry_after: float | datetime
        if at is not None:
            if seconds is not None:
                raise ValueError("RetryAfter needs exactly one of `seconds` or `at`")
            if at.tzinfo is None:
                raise ValueError("RetryAfter(at=...) needs an aware datetime")
            self.retry_after, when = at, f"at {at:%Y-%m-%dT%H:%M:%SZ}"
        elif seconds is not None:
            if seconds < 0:
                raise ValueError("RetryAfter(seconds=...) must not be negative")
            self.retry_after, when = seconds, f"in {seconds:g} s"
        else:
            raise ValueError("RetryAfter needs exactly one of `seconds` or `at`")
        self.throttles_mailbox = throttle_mailbox
        super().__init__(message or f"retry {when}")


class RetryLater(JobError):
    """Not done yet: run the job again after the queue's usual backoff."""

    permanent = False


class PermanentError(JobError):
    """The job cannot succeed by retrying (invalid mailbox, no consent, bad secret)."""

    permanent = True


class QueueError(Exception):
    """Base of the errors queue operations raise."""


class JobNotFound(QueueError):
    def __init__(self, job_id: int) -> None:
        super().__init__(f"job {job_id} does not exist")
        self.job_id = job_id


class JobNotRetriable(QueueError):
    def __init__(self, job_id: int, state: str) -> None:
        super().__init__(f"job {job_id} is {state}: only dead or failed jobs can be retried")
        self.job_id = job_id
        self.state = state


class DuplicatePendingJob(QueueError):
    def __init__(self, job_id: int, pending_id: int | None) -> None:
        twin = f"job {pending_id}" if pending_id is not None else "another job"
        super().__init__(f"{twin} with the same dedupe key is already pending")
        self.job_id = job_id
        self.pending_id = pending_id
