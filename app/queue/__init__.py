"""The durable job queue: enqueue inside the caller's transaction, claim and run in workers."""

from app.queue.repository import enqueue

__all__ = ["enqueue"]
