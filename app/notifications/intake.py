"""The Graph notification intake: every item checked (known subscription, clientState in
constant time, resource in that subscription's mailbox) and turned into queued delta runs,
paced per mailbox. Graph is never called here.

Graph marks an endpoint slow when answers take over 3 s, so the work per request is a parse, an
in-memory lookup and one short transaction.
"""

from __future__ import annotations

import hmac
import logging
import re
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app import counters
from app.busy.tasks import SYNC_MAILBOX, mailbox_sync_job
from app.crypto import SecretBox
from app.db import Database
from app.models.base import utcnow
from app.notifications import repository as repo
from app.notifications.tasks import renew_job, subscription_job
from app.queue.repository import NewJob, enqueue_many

log = logging.getLogger(__name__)

# Pacing of one mailbox's delta runs. A notification runs after SYNC_DEBOUNCE (what arrives
# meanwhile finds that job pending: one pending job per mailbox). Only a storm, more than
# STORM_NOTIFICATIONS between two runs, makes each next run wait twice as long as the one
# before, up to SYNC_MAX_INTERVAL: a storm costs a few runs, while a person's changes, however
# quickly one follows the other, are each picked up within a second, and during a storm no
# change waits much longer than the cap (the freshness promise).
SYNC_DEBOUNCE = 0.5
SYNC_MAX_INTERVAL = 3.0
STORM_NOTIFICATIONS = 20
# A job this close to being due may be claimed by a worker whose clock runs ahead: write again.
PENDING_MARGIN = 0.2
# `last_notification_at` is written at most this often per subscription (seconds).
STAMP_EVERY = 1.0
# How long a looked-up subscription (with its decrypted clientState) is trusted, and how long an
# unknown id stays unknown: a storm then costs neither queries nor decryptions.
KNOWN_TTL_SECONDS = 30.0
UNKNOWN_TTL_SECONDS = 2.0
MAX_CACHED = 10_000

LIFECYCLE_EVENTS = frozenset({"reauthorizationRequired", "subscriptionRemoved", "missed"})


@dataclass(frozen=True, slots=True)
class _Known:
    sub: repo.KnownSubscription
    client_state: str | None  # decrypted; None when the stored one cannot be read


@dataclass
class _Pace:
    run_at: float  # monotonic time of the last scheduled run
    interval: float
    count: int = 1  # notifications that the run at `run_at` answers


@dataclass
class NotificationIntake:
    """The process's Graph notification intake: subscription cache, drop counters, writer."""

    database: Database
    secret_box: SecretBox
    clock: Callable[[], float] = time.monotonic
    dropped: Counter[str] = field(default_factory=Counter)
    accepted: int = 0
    _cache: dict[str, tuple[float, _Known | None]] = field(default_factory=dict)
    _pace: dict[str, _Pace] = field(default_factory=dict)
    # Delta runs this process queued, by dedupe key: (monotonic) time they become due. Until
    # then the job is surely pending (nothing claims a job before its run_at), so another
    # notification for the mailbox needs no write at all.
    _pending_until: dict[str, float] = field(default_factory=dict)
    _stamped: dict[int, float] = field(default_factory=dict)

    def forget(self) -> None:
        """Drop every remembered subscription (tests; an admin change)."""
        self._cache.clear()

    async def lookup(self, session: AsyncSession, graph_ids: set[str]) -> dict[str, _Known]:
        now = self.clock()
        found: dict[str, _Known] = {}
        missing: list[str] = []
        for graph_id in graph_ids:
            cached = self._cache.get(graph_id)
            if cached is not None and cached[0] > now:
                if cached[1] is not None:
                    found[graph_id] = cached[1]
            else:
                missing.append(graph_id)
        if missing:
            rows = await repo.find_by_graph_ids(session, missing)
            if len(self._cache) > MAX_CACHED:
                self._cache.clear()
            for graph_id in missing:
                sub = rows.get(graph_id)
                if sub is None:
                    self._cache[graph_id] = (now + UNKNOWN_TTL_SECONDS, None)
                    continue
                known = _Known(sub, self._decrypt(sub.client_state_encrypted))
                self._cache[graph_id] = (now + KNOWN_TTL_SECONDS, known)
                found[graph_id] = known
        return found

    def _decrypt(self, token: str | None) -> str | None:
        plain = self.secret_box.decrypt_or_none(token)
        if token is not None and plain is None:
            log.error("a subscription's clientState cannot be decrypted with the current keys")
        return plain

    async def receive(self, items: list[Any], *, source: str = "graph_notifications") -> bool:
        """Check every item, queue the jobs of the valid ones in one transaction; True when
        anything was queued. `source` labels the items in the metrics (graph_notifications,
        graph_lifecycle).

        The request's transaction is opened here rather than by the route: what this process
        remembers about pending jobs may only change once they are committed."""
        ids = {
            item["subscriptionId"]
            for item in items
            if isinstance(item, dict) and isinstance(item.get("subscriptionId"), str)
        }
        async with self.database.session_scope() as session:
            written = await self._check_and_write(session, items, ids, source)
        if written is None:
            return False
        clock, now, batch, touched, created = written
        for row_id in touched:
            self._stamped[row_id] = clock
        if len(self._pending_until) > MAX_CACHED:
            self._pending_until.clear()
        due = {job.dedupe_key: job.run_at for job in batch if job.dedupe_key in created}
        for key, run_at in due.items():
            if run_at is not None:
                self._pending_until[key] = clock + (run_at - now).total_seconds()
        return bool(created)

    async def _check_and_write(
        self, session: AsyncSession, items: list[Any], ids: set[str], source: str
    ) -> tuple[float, datetime, list[NewJob], dict[int, datetime], set[str]] | None:
        """Check the items and write what they ask for: (clock, now, jobs written, rows
        stamped, dedupe keys of the new jobs), or None when there was nothing to write."""
        known = await self.lookup(session, ids)
        now = utcnow()
        clock = self.clock()
        jobs: dict[str, NewJob] = {}
        touched: dict[int, datetime] = {}
        learned: dict[int, str] = {}
        drops: dict[str, int] = {}
        for item in items:
            verdict = _check(item, known)
            if isinstance(verdict, str):
                drops[verdict] = drops.get(verdict, 0) + 1
                continue
            sub, job, user_id = verdict
            jobs.setdefault(job.dedupe_key, job)
            if clock - self._stamped.get(sub.id, -STAMP_EVERY) >= STAMP_EVERY:
                touched[sub.id] = now
            if user_id is not None:
                learned[sub.id] = user_id
                self._learn(item["subscriptionId"], user_id)
        dropped = sum(drops.values())
        counters.graph_items_received(source, len(items) - dropped, drops.items())
        if drops:
            self.dropped.update(drops)
            # Counts and reasons only: never a clientState, nor which id was guessed.
            log.warning(
                "graph notifications: dropped %d of %d items (%s)",
                dropped,
                len(items),
                ", ".join(f"{reason}={count}" for reason, count in sorted(drops.items())),
            )
        if not jobs:
            return None
        self.accepted += len(items) - dropped
        batch = [
            self.paced(job, now)
            for key, job in jobs.items()
            if clock >= self._pending_until.get(key, clock) - PENDING_MARGIN
        ]
        if not batch and not touched and not learned:
            return None  # every job already pending, not yet due: nothing to write
        queued = await enqueue_many(session, batch) if batch else {}
        await repo.learn_owners(session, learned)
        if touched:
            await repo.stamp_notified(session, touched, max(touched.values()))
        created = {key for key, job_id in queued.items() if job_id is not None}
        return clock, now, batch, touched, created

    def _learn(self, graph_id: str, user_id: str) -> None:
        """Check later items of this subscription against the owner id now known."""
        cached = self._cache.get(graph_id)
        if cached is not None and cached[1] is not None:
            known = cached[1]
            self._cache[graph_id] = (
                cached[0],
                _Known(replace(known.sub, graph_user_id=user_id), known.client_state),
            )

    def paced(self, job: NewJob, now: datetime) -> NewJob:
        """A plain delta run, scheduled per this mailbox's pace (full resyncs run at once)."""
        if job.kind != SYNC_MAILBOX or job.args.get("full"):
            return job
        clock = self.clock()
        pace = self._pace.get(job.dedupe_key)
        if pace is None or clock > pace.run_at + 2 * pace.interval:
            if len(self._pace) > MAX_CACHED:
                self._pace.clear()
            pace = self._pace[job.dedupe_key] = _Pace(clock + SYNC_DEBOUNCE, SYNC_DEBOUNCE)
        elif clock < pace.run_at:
            pace.count += 1
        else:
            # The scheduled run has started (or is about to): the next one waits as long, or
            # twice as long when a storm kept that one busy.
            storm = pace.count > STORM_NOTIFICATIONS
            pace.interval = min(pace.interval * 2, SYNC_MAX_INTERVAL) if storm else SYNC_DEBOUNCE
            pace.run_at = max(clock + SYNC_DEBOUNCE, pace.run_at + pace.interval)
            pace.count = 1
        return replace(job, run_at=now + timedelta(seconds=pace.run_at - clock))


def _check(
    item: Any, known: dict[str, _Known]
) -> tuple[repo.KnownSubscription, NewJob, str | None] | str:
    """The subscription, job and (first seen) owner id of a valid item, or why it is dropped."""
    if not isinstance(item, dict):
        return "malformed"
    graph_id = item.get("subscriptionId")
    entry = known.get(graph_id) if isinstance(graph_id, str) else None
    if entry is None:
        return "unknown_subscription"
    given = item.get("clientState")
    if (
        entry.client_state is None
        or not isinstance(given, str)
        or not hmac.compare_digest(given.encode(), entry.client_state.encode())
    ):
        return "client_state"
    sub = entry.sub
    lifecycle = item.get("lifecycleEvent")
    if lifecycle is not None:
        if lifecycle == "missed":
            return sub, mailbox_sync_job(sub.connection_id, sub.mailbox, full=True), None
        if lifecycle == "subscriptionRemoved":
            # Recreated first; its success queues the full resync.
            return sub, subscription_job(sub.connection_id, sub.mailbox, recreate=True), None
        if lifecycle == "reauthorizationRequired":
            return sub, renew_job(sub.connection_id, sub.mailbox, reauthorize=True), None
        return "unknown_lifecycle_event"
    who = _resource_user(item.get("resource"))
    if who is None:
        return "foreign_resource"
    job = mailbox_sync_job(sub.connection_id, sub.mailbox)
    if who == sub.mailbox:
        return sub, job, None
    user_id = who.removesuffix(f"@{sub.tenant.casefold()}")
    if sub.graph_user_id is None:
        # Subscribed by address (the app may not read the directory): Graph names the mailbox by
        # its owner's object id. The first item that passed the clientState check tells it;
        # from then on every item is held to it.
        return (sub, job, user_id) if _OBJECT_ID.fullmatch(user_id) else "foreign_resource"
    return (sub, job, None) if user_id == sub.graph_user_id.casefold() else "foreign_resource"


_OBJECT_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def _resource_user(resource: Any) -> str | None:
    """`who` of `Users/{who}/Events/...` (lowercase): an address, an object id, or an object id
    with the tenant (`{id}@{tenant}`, as Graph sometimes sends); None for anything else."""
    if not isinstance(resource, str):
        return None
    parts = resource.lstrip("/").split("/")
    if len(parts) < 3 or parts[0].casefold() != "users" or parts[2].casefold() != "events":
        return None
    return parts[1].casefold()


def build_notification_intake(database: Database, secret_box: SecretBox) -> NotificationIntake:
    """The process's notification intake (built once, in the app's lifespan)."""
    return NotificationIntake(database, secret_box)
