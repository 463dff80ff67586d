"""The durable job queue: enqueue inside the caller's transaction, claim and run in workers."""

from app.queue.errors import PermanentError, RetryAfter
from app.queue.registry import JobContext, JobRegistry
from app.queue.repository import NewJob, enqueue, enqueue_many

__all__ = [
    "JobContext",
    "JobRegistry",
    "NewJob",
    "PermanentError",
    "RetryAfter",
    "enqueue",
    "enqueue_many",
]
