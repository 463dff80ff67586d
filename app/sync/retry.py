"""How a Graph failure becomes a queue decision: the Graph client raises, the queue retries, and
this is the one place that translates between them (neither package knows the other)."""

from __future__ import annotations

from app.graph.errors import GraphError, Throttled, Transient
from app.queue.errors import PermanentError, RetryAfter


def job_error(error: GraphError) -> Exception:
    """The exception a job handler raises for `error`.

    Throttled: retry after exactly Graph's Retry-After, and hold every job of the mailbox as long
    (the queue's mailbox limit then spares Graph the calls it would refuse anyway). Transient with
    a Retry-After: the same, for this job only. Other retryable errors: the error itself, so the
    queue backs off with jitter. Permanent: fail at once with the readable message.
    """
    if isinstance(error, Throttled):
        return RetryAfter(seconds=error.retry_after, throttle_mailbox=True)
    if isinstance(error, Transient) and error.retry_after is not None:
        return RetryAfter(seconds=error.retry_after)
    if error.permanent:
        return PermanentError(str(error))
    return error
