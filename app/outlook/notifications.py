"""`POST /webhooks/graph/notifications` and `POST /webhooks/graph/lifecycle`: Graph's validation
handshake, then every item checked (known subscription, clientState in constant time, resource
in that subscription's mailbox) and turned into queued jobs. Graph is never called here.

Graph marks an endpoint slow when answers take over 3 s, so the work per request is a parse, an
in-memory lookup and one shared (group-committed) transaction.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import PlainTextResponse, Response

from app import metrics
from app.config import Settings
from app.crypto import SecretBox
from app.db import Database, Statements
from app.inbox.group_commit import GroupCommitter
from app.models.base import utcnow
from app.outlook import sub_repository as repo
from app.outlook.jobs import SYNC_MAILBOX, mailbox_sync_job, renew_job, subscription_job
from app.outlook.subscriptions import LIFECYCLE_PATH, NOTIFICATION_PATH
from app.problems import ProblemError, problem_responses
from app.queue.repository import NewJob
from app.routing import RawRequestRoute, read_body

log = logging.getLogger(__name__)

# Graph's tokens are about 150 characters; anything far longer is not Graph.
MAX_VALIDATION_TOKEN = 1024
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
class _Write:
    jobs: list[NewJob]
    touched: dict[int, datetime]
    learned: dict[int, str]  # subscription row → its mailbox owner's object id, first seen


def _write_batch(db: Statements, writes: Sequence[_Write]) -> list[set[str]]:
    """One unit of work for concurrent requests' writes; each learns which of its jobs were
    new (the others coalesced into a pending job)."""
    jobs: list[NewJob] = []
    touched: dict[int, datetime] = {}
    learned: dict[int, str] = {}
    for write in writes:
        jobs += write.jobs
        learned |= write.learned
        for row_id, at in write.touched.items():
            touched[row_id] = max(at, touched.get(row_id, at))
    created = repo.record_notifications(db, jobs=jobs, touched=touched, learned=learned)
    return [{job.dedupe_key for job in write.jobs} & created for write in writes]


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
    _writer: GroupCommitter[_Write, set[str]] | None = None

    def __post_init__(self) -> None:
        self._writer = GroupCommitter(self.database, unit=_write_batch)

    async def close(self) -> None:
        if self._writer is not None:
            await self._writer.close()

    def forget(self) -> None:
        """Drop every remembered subscription (tests; an admin change)."""
        self._cache.clear()

    async def lookup(self, graph_ids: set[str]) -> dict[str, _Known]:
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
            async with self.database.session() as session:
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
        """Check every item, queue the jobs of the valid ones; True when anything was queued.
        `source` labels the items in the metrics (graph_notifications, graph_lifecycle)."""
        ids = {
            item["subscriptionId"]
            for item in items
            if isinstance(item, dict) and isinstance(item.get("subscriptionId"), str)
        }
        known = await self.lookup(ids)
        now = utcnow()
        clock = self.clock()
        jobs: dict[str, NewJob] = {}
        touched: dict[int, datetime] = {}
        learned: dict[int, str] = {}
        drops: dict[str, int] = {}  # a plain dict: Counter() alone cost ~5% of a request
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
        metrics.graph_items_received(source, len(items) - dropped, drops.items())
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
            return False
        self.accepted += len(items) - dropped
        batch = [
            self.paced(job, now)
            for key, job in jobs.items()
            if clock >= self._pending_until.get(key, clock) - PENDING_MARGIN
        ]
        if not batch and not touched and not learned:
            return False  # every job already pending, not yet due: nothing to write
        assert self._writer is not None
        created = await self._writer.submit(_Write(batch, touched, learned))
        for row_id in touched:
            self._stamped[row_id] = clock
        if len(self._pending_until) > MAX_CACHED:
            self._pending_until.clear()
        due = {job.dedupe_key: job.run_at for job in batch if job.dedupe_key in created}
        for key, run_at in due.items():
            if run_at is not None:
                self._pending_until[key] = clock + (run_at - now).total_seconds()
        return bool(created)

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


def _items(body: bytes) -> list[Any]:
    try:
        document = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: nested too deep
        raise ProblemError(400, "invalid_json", "The body is not JSON", detail=str(exc)) from exc
    value = document.get("value") if isinstance(document, dict) else None
    if not isinstance(value, list):
        raise ProblemError(
            400,
            "invalid_notification",
            "The body is not a notification collection",
            detail='expected {"value": [ ... ]}',
        )
    return value


def _handshake(token: str) -> Response:
    if not token or len(token) > MAX_VALIDATION_TOKEN:
        raise ProblemError(
            400,
            "invalid_validation_token",
            "The validation token is not valid",
            detail=f"a validation token has 1 to {MAX_VALIDATION_TOKEN} characters",
        )
    # text/plain and nosniff: a token carrying markup is echoed, never rendered as HTML.
    return PlainTextResponse(
        token,
        media_type="text/plain; charset=utf-8",
        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-store"},
    )


async def _receive(request: Request, source: str) -> Response:
    try:
        token = request.query_params.get("validationToken")
        if token is not None:
            response = _handshake(token)
            metrics.webhook_received(source, "validation")
            return response
        settings: Settings = request.app.state.settings
        body = await read_body(request, settings.max_webhook_bytes, "notification")
        items = _items(body)
    except ProblemError as exc:
        metrics.webhook_received(source, exc.code)
        raise
    intake: NotificationIntake = request.app.state.graph_notifications
    if await intake.receive(items, source=source):
        request.app.state.wake_worker()
    return Response(status_code=202)


router = APIRouter(tags=["webhooks"], route_class=RawRequestRoute)

_EXAMPLE_CHANGE = {
    "value": [
        {
            "id": "lsgTZMr9KwAAA",
            "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
            "subscriptionExpirationDateTime": "2026-12-03T10:00:00Z",
            "clientState": "<the subscription's secret clientState>",
            "changeType": "updated",
            "resource": "Users/8ee44408-0679-472c-bc2a-692812af3437/Events/AAMkAGI2TG93AAA=",
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "resourceData": {
                "@odata.type": "#Microsoft.Graph.Event",
                "@odata.id": "Users/8ee44408-0679-472c-bc2a-692812af3437/Events/AAMkAGI2TG93AAA=",
                "id": "AAMkAGI2TG93AAA=",
            },
        }
    ]
}
_EXAMPLE_LIFECYCLE = {
    "value": [
        {
            "subscriptionId": "7f105c7d-2dc5-4530-97cd-4e7ae6534c07",
            "subscriptionExpirationDateTime": "2026-12-03T10:00:00Z",
            "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
            "clientState": "<the subscription's secret clientState>",
            "lifecycleEvent": "reauthorizationRequired",
        }
    ]
}


def _openapi(example: dict[str, Any]) -> dict[str, Any]:
    return {
        "parameters": [
            {
                "name": "validationToken",
                "in": "query",
                "required": False,
                "schema": {"type": "string", "maxLength": MAX_VALIDATION_TOKEN},
                "description": "Graph's validation handshake: echoed as `text/plain`.",
            }
        ],
        "requestBody": {
            "required": False,
            "content": {
                "application/json": {
                    # Items are not described: each is checked, and a malformed one is dropped.
                    "schema": {
                        "type": "object",
                        "required": ["value"],
                        "properties": {"value": {"type": "array"}},
                    },
                    "example": example,
                }
            },
        },
    }


_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "validation handshake: the decoded token",
        "content": {"text/plain": {"example": "Validation: Testing client application"}},
    },
    202: {"description": "accepted (valid items queued, invalid ones dropped)"},
    **problem_responses(400, 413),
}

_CHECKS = (
    "Every item is checked: a known subscription, its `clientState` (constant-time), and (for "
    "changes) a `resource` inside that subscription's mailbox; items that fail are dropped and "
    "counted, never reported back. The answer is `202` with no body whatever the batch held. "
    "Errors: `invalid_json`, `invalid_notification`, `invalid_validation_token` (400), "
    "`payload_too_large` (413)."
)


@router.post(
    NOTIFICATION_PATH,
    status_code=202,
    response_class=Response,  # 202 has no body (the handshake's 200 is text/plain)
    summary="Receive Microsoft Graph change notifications",
    description=(
        "With `?validationToken=` (Graph's handshake when a subscription is created) the "
        "decoded token is answered as `text/plain`. Otherwise each valid change queues one "
        "delta run (`sync.mailbox`) of its mailbox; a burst for one mailbox queues one. " + _CHECKS
    ),
    responses=_RESPONSES,
    openapi_extra=_openapi(_EXAMPLE_CHANGE),
)
async def receive_notifications(request: Request) -> Response:
    return await _receive(request, "graph_notifications")


@router.post(
    LIFECYCLE_PATH,
    status_code=202,
    response_class=Response,  # 202 has no body (the handshake's 200 is text/plain)
    summary="Receive Microsoft Graph lifecycle notifications",
    description=(
        "The validation handshake as on the notification URL. `reauthorizationRequired` "
        "queues a reauthorization, `subscriptionRemoved` a new subscription followed by a full "
        "resync, `missed` a full resync. " + _CHECKS
    ),
    responses=_RESPONSES,
    openapi_extra=_openapi(_EXAMPLE_LIFECYCLE),
)
async def receive_lifecycle(request: Request) -> Response:
    return await _receive(request, "graph_lifecycle")


def build_notification_intake(database: Database, secret_box: SecretBox) -> NotificationIntake:
    """The process's notification intake (built once, in the app's lifespan)."""
    return NotificationIntake(database, secret_box)
