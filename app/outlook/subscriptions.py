"""Graph change-notification subscriptions, one per mapped mailbox and connection: create,
renew before expiry, reauthorize, recreate when Graph lost them, delete when the mapping goes.

Every Graph call runs in a job (`subscription.ensure`, `subscription.renew`,
`subscription.delete`, periodic `subscription.upkeep`), never in a request and never inside a
transaction. Failures show in the subscription row's `last_error_*` and the sync history, then
the queue retries them with backoff (permanent ones fail at once). Entra refusing the client
secret marks the connection's secret `rejected`, as a sync does.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from app.config import Settings, public_url_problem
from app.connections import secrets as client_secrets
from app.connections.schemas import SubscriptionStatus
from app.crypto import SecretBox, SecretKeyError
from app.db import Database
from app.graph.client import GraphClient
from app.graph.errors import AccessDenied, GraphError, ItemNotFound, UnexpectedGraphError
from app.graph.schemas import Subscription as GraphSubscription
from app.models import Connection, Subscription
from app.outlook import sub_repository as repo
from app.outlook.jobs import (
    SUBSCRIPTION_DELETE,
    SUBSCRIPTION_ENSURE,
    SUBSCRIPTION_RENEW,
    SUBSCRIPTION_UPKEEP,
    delete_job,
    mailbox_sync_job,
    renew_job,
    subscription_job,
)
from app.queue.errors import PermanentError, RetryAfter
from app.queue.registry import JobContext
from app.queue.repository import NewJob, enqueue_many
from app.sync.graph_clients import GraphClients
from app.sync.messages import error_code, message
from app.sync.retry import job_error

log = logging.getLogger(__name__)

__all__ = [
    "SUBSCRIPTION_DELETE",
    "SUBSCRIPTION_ENSURE",
    "SUBSCRIPTION_RENEW",
    "SUBSCRIPTION_UPKEEP",
]


NOTIFICATION_PATH = "/webhooks/graph/notifications"
LIFECYCLE_PATH = "/webhooks/graph/lifecycle"
CHANGE_TYPE = "created,updated,deleted"
# 48 random bytes → 64 url-safe characters: well over 32 bytes of entropy, under Graph's 128.
CLIENT_STATE_BYTES = 48
# graph-protocol.md §1.5: reauthorize and PATCH of one subscription at least this far apart.
REAUTHORIZE_GAP = timedelta(minutes=10)

PENDING, ACTIVE, FAILED, DISABLED = "pending", "active", "failed", "disabled"


class HandshakeFailed(Exception):
    """Graph refused a create because calbridge's endpoint failed its validation request.

    Graph answers 400, which reads as permanent, but the cause usually passes (the API is
    starting, being deployed, or was briefly slow), so the job retries with the queue's backoff
    instead of waiting for the next upkeep.
    """


def _handshake_failed(error: GraphError) -> bool:
    # §1.2: "Subscription validation request failed. …" / "… validation request timed out."
    return error.status == 400 and "validation request" in error.message.casefold()


def notification_url(settings: Settings) -> str:
    return f"{settings.public_url}{NOTIFICATION_PATH}"


def lifecycle_url(settings: Settings) -> str:
    return f"{settings.public_url}{LIFECYCLE_PATH}"


def disabled_reason(settings: Settings, mailbox: str) -> tuple[str, dict[str, Any]] | None:
    """Why subscriptions are off (history code and params), or None when they can run."""
    if not settings.public_url:
        return "subscription_disabled", {"mailbox": mailbox}
    problem = public_url_problem(settings.public_url)
    if problem is not None:
        return "subscription_url_invalid", {"mailbox": mailbox, "reason": problem}
    return None


def new_client_state() -> str:
    return secrets.token_urlsafe(CLIENT_STATE_BYTES)


def _time(value: datetime | None) -> str:
    return "?" if value is None else value.strftime("%Y-%m-%d %H:%M UTC")


# --- hooks for the employee mapping ---------------------------------------------------------


async def queue_ensure(session: AsyncSession, *, connection_id: int, mailbox: str) -> bool:
    """A mapping became valid: make sure its mailbox has a subscription (a no-op job when it
    has a live one). False when such a job was already waiting."""
    job = subscription_job(connection_id, repo.mailbox_key(mailbox))
    return (await enqueue_many(session, [job]))[job.dedupe_key] is not None


async def release_mailbox(session: AsyncSession, *, connection_id: int, mailbox: str) -> bool:
    """A mapping to `mailbox` was removed or moved: when no employee of the connection maps to
    it any more, drop its subscription row and queue the delete in Graph. True if dropped."""
    if await repo.mailbox_employees(session, connection_id=connection_id, mailbox=mailbox):
        return False
    row = await repo.get(session, connection_id=connection_id, mailbox=mailbox)
    if row is None:
        return False
    graph_id = row.graph_subscription_id
    await repo.delete(session, row)
    if graph_id is not None:
        await enqueue_many(session, [delete_job(connection_id, row.mailbox, graph_id)])
    return True


async def release_connection(session: AsyncSession, *, connection: Connection) -> int:
    """The connection is being deleted: queue the delete in Graph of each of its subscriptions,
    carrying the credentials (encrypted) it needs once the connection's row is gone. Called in
    the deleting transaction before the row goes, so either both happen or neither. Returns the
    deletes queued."""
    credentials = {
        "tenant": connection.tenant,
        "client_id": connection.client_id,
        "client_secret_encrypted": connection.client_secret_encrypted,
    }
    jobs = [
        delete_job(connection.id, row.mailbox, row.graph_subscription_id, credentials=credentials)
        for row in await repo.for_connection(session, connection_id=connection.id)
        if row.graph_subscription_id is not None
    ]
    queued = await enqueue_many(session, jobs)
    return sum(1 for job_id in queued.values() if job_id is not None)


# --- status -----------------------------------------------------------------------------------


def status_of(
    settings: Settings, row: Subscription | None, *, mailbox: str, locale: str
) -> SubscriptionStatus:
    """What the employee status shows about its mailbox's subscription."""
    off = disabled_reason(settings, mailbox)
    if off is not None:
        return SubscriptionStatus(
            state=DISABLED,
            expires_at=None,
            last_notification_at=row.last_notification_at if row else None,
            message=message(off[0], locale, off[1]),
        )
    if row is None or row.state == DISABLED:
        # Set up by the next ensure or upkeep job now that a public URL is configured.
        return SubscriptionStatus(
            state=PENDING, expires_at=None, last_notification_at=None, message=None
        )
    state = row.state if row.state in (PENDING, ACTIVE, FAILED) else PENDING
    return SubscriptionStatus(
        state=state,
        expires_at=row.expires_at,
        last_notification_at=row.last_notification_at,
        message=row.last_error_message,
    )


async def statuses(
    session: AsyncSession,
    settings: Settings,
    *,
    connection_id: int,
    mailboxes: list[str],
    locale: str,
) -> dict[str, SubscriptionStatus]:
    """The subscription status of each mailbox (lowercase keys)."""
    rows = await repo.for_mailboxes(session, connection_id=connection_id, mailboxes=mailboxes)
    return {
        repo.mailbox_key(m): status_of(
            settings, rows.get(repo.mailbox_key(m)), mailbox=m, locale=locale
        )
        for m in mailboxes
    }


# --- the jobs' work -------------------------------------------------------------------------


@dataclass(frozen=True)
class _Loaded:
    connection: Connection
    employees: list[str]
    row_id: int
    graph_subscription_id: str | None
    graph_user_id: str | None
    state: str
    expires_at: datetime | None
    last_renewed_at: datetime | None
    last_reauthorized_at: datetime | None


def _loaded(connection: Connection, employees: list[str], row: Subscription) -> _Loaded:
    return _Loaded(
        connection,
        employees,
        row.id,
        row.graph_subscription_id,
        row.graph_user_id,
        row.state,
        row.expires_at,
        row.last_renewed_at,
        row.last_reauthorized_at,
    )


@dataclass
class SubscriptionService:
    """The subscription work of one process: its database, settings, Graph clients, secrets."""

    database: Database
    settings: Settings
    graph: GraphClients
    secret_box: SecretBox

    def _client(self, connection: Connection) -> GraphClient:
        try:
            return self.graph.client_for(connection, self.secret_box)
        except SecretKeyError as exc:
            raise PermanentError(
                f"the connection's client secret cannot be decrypted: {exc}"
            ) from exc

    async def ensure(
        self,
        *,
        connection_id: int,
        mailbox: str,
        recreate: bool = False,
        job_id: int | None = None,
        now: datetime,
    ) -> None:
        """Create the mailbox's subscription unless a live one is on record (`recreate`: even
        then). After a recreate the mailbox is fully resynced (changes in the gap were lost)."""
        mailbox = repo.mailbox_key(mailbox)
        async with self.database.session_scope() as session:
            connection = await repo.connection(session, connection_id)
            if connection is None:
                return
            employees = await repo.mailbox_employees(
                session, connection_id=connection_id, mailbox=mailbox
            )
            if not employees:
                return  # unmapped since the job was queued; release_mailbox cleaned up
            row = await repo.get_or_add(session, connection_id=connection_id, mailbox=mailbox)
            off = disabled_reason(self.settings, mailbox)
            if off is not None:
                await self._disable(session, row, employees, off, connection.locale, job_id, now)
                return
            renew_at = now + timedelta(minutes=self.settings.outlook.renew_before_minutes)
            live = (
                row.state == ACTIVE
                and row.graph_subscription_id is not None
                and row.expires_at is not None
                and row.expires_at > renew_at
            )
            if live and not recreate:
                return
            if row.state == DISABLED:
                row.state = PENDING
            loaded = _loaded(connection, employees, row)
        client = self._client(loaded.connection)
        client_state = new_client_state()
        try:
            if loaded.graph_subscription_id is not None:
                await _delete_quietly(client, loaded.graph_subscription_id)
            user_id = loaded.graph_user_id or await _user_id(client, mailbox)
            created = await self._create(client, mailbox, user_id, client_state, now)
        except GraphError as exc:
            handshake = _handshake_failed(exc)
            await self._failed(loaded, mailbox, exc, job_id, now, retryable=handshake)
            if handshake:
                raise HandshakeFailed(str(exc)) from exc
            raise job_error(exc) from exc

        orphan: str | None = None
        async with self.database.session_scope() as session:
            stored = await repo.get(session, connection_id=connection_id, mailbox=mailbox)
            employees = await repo.mailbox_employees(
                session, connection_id=connection_id, mailbox=mailbox
            )
            if stored is None or not employees:
                orphan = created.value.id  # the mapping went away while Graph answered
            else:
                stored.graph_subscription_id = created.value.id
                stored.graph_user_id = user_id
                stored.client_state_encrypted = self.secret_box.encrypt(client_state)
                stored.state = ACTIVE
                stored.expires_at = created.value.expiration_date_time
                # A new subscription: no PATCH or reauthorize of it yet (§1.5's 10 minutes).
                stored.last_renewed_at = stored.last_reauthorized_at = None
                stored.last_error_at = stored.last_error_code = stored.last_error_message = None
                params = {"mailbox": mailbox, "expires_at": _time(stored.expires_at)}
                await repo.add_records(
                    session,
                    connection_id=connection_id,
                    mailbox=mailbox,
                    employees=employees,
                    job_id=job_id,
                    status="ok",
                    code="subscription_created",
                    message=message("subscription_created", loaded.connection.locale, params),
                    details={"subscription_id": created.value.id, "recreated": recreate},
                    graph_request_id=created.request_id,
                )
                # A first subscription starts the mailbox's delta; a recreated one starts over,
                # since what changed while there was none was never notified.
                await enqueue_many(
                    session, [mailbox_sync_job(connection_id, mailbox, full=recreate)]
                )
        if orphan is not None:
            await _delete_quietly(client, orphan)
        log.info("subscription of %s created (recreate=%s)", mailbox, recreate)

    async def _create(
        self, client: GraphClient, mailbox: str, user_id: str | None, state: str, now: datetime
    ) -> Any:
        resource = f"users/{user_id or mailbox}/events"
        expiration = now + timedelta(minutes=self.settings.outlook.subscription_minutes)

        async def attempt() -> Any:
            return await client.create_subscription(
                resource=resource,
                change_type=CHANGE_TYPE,
                notification_url=notification_url(self.settings),
                lifecycle_notification_url=lifecycle_url(self.settings),
                client_state=state,
                expiration=expiration,
            )

        try:
            return await attempt()
        except UnexpectedGraphError as exc:
            if exc.status != 409:
                raise
        # §1.1: one of ours exists for this resource (a crash lost its id): replace it.
        listed = await client.list_subscriptions()
        for other in listed.value:
            if _same_resource(other, resource, mailbox, user_id):
                await _delete_quietly(client, other.id)
        return await attempt()

    async def renew(
        self,
        *,
        connection_id: int,
        mailbox: str,
        reauthorize: bool = False,
        job_id: int | None = None,
        now: datetime,
    ) -> None:
        """PATCH a new expiry (or, for `reauthorize`, POST …/reauthorize); a subscription Graph
        no longer has is recreated, then the mailbox fully resynced."""
        mailbox = repo.mailbox_key(mailbox)
        async with self.database.session_scope() as session:
            connection = await repo.connection(session, connection_id)
            row = await repo.get(session, connection_id=connection_id, mailbox=mailbox)
            if connection is None or row is None:
                return
            employees = await repo.mailbox_employees(
                session, connection_id=connection_id, mailbox=mailbox
            )
            if row.graph_subscription_id is None or row.state != ACTIVE:
                # Nothing live to renew: creating it is the ensure job's work.
                await enqueue_many(session, [subscription_job(connection_id, mailbox)])
                return
            loaded = _loaded(connection, employees, row)
        graph_id = loaded.graph_subscription_id
        assert graph_id is not None
        # Reauthorize and PATCH of one subscription must be 10 minutes apart (§1.5).
        other = loaded.last_renewed_at if reauthorize else loaded.last_reauthorized_at
        if other is not None and now - other < REAUTHORIZE_GAP:
            raise RetryAfter(
                at=other + REAUTHORIZE_GAP,
                message="reauthorize and renew of one subscription must be 10 minutes apart",
            )
        client = self._client(loaded.connection)
        try:
            if reauthorize:
                result: Any = await client.reauthorize_subscription(graph_id)
            else:
                expiration = now + timedelta(minutes=self.settings.outlook.subscription_minutes)
                result = await client.renew_subscription(graph_id, expiration)
        except ItemNotFound:
            await self._gone(loaded, mailbox, job_id, now)
            return
        except GraphError as exc:
            await self._failed(loaded, mailbox, exc, job_id, now, keep_state=True)
            raise job_error(exc) from exc
        async with self.database.session_scope() as session:
            row = await repo.get(session, connection_id=connection_id, mailbox=mailbox)
            if row is None or row.graph_subscription_id != graph_id:
                return
            if reauthorize:
                row.last_reauthorized_at = now
                code = "subscription_reauthorized"
            else:
                row.expires_at = result.value.expiration_date_time
                row.last_renewed_at = now
                code = "subscription_renewed"
            row.last_error_at = row.last_error_code = row.last_error_message = None
            params = {"mailbox": mailbox, "expires_at": _time(row.expires_at)}
            await repo.add_records(
                session,
                connection_id=connection_id,
                mailbox=mailbox,
                employees=loaded.employees,
                job_id=job_id,
                status="ok",
                code=code,
                message=message(code, loaded.connection.locale, params),
                graph_request_id=result.request_id,
            )

    async def _gone(self, loaded: _Loaded, mailbox: str, job_id: int | None, now: datetime) -> None:
        """Graph answered 404: the subscription expired or was removed. Recreate it."""
        async with self.database.session_scope() as session:
            row = await repo.get_by_id(session, loaded.row_id)
            if row is None:
                return
            row.state = PENDING
            row.graph_subscription_id = None
            row.client_state_encrypted = None
            await repo.add_records(
                session,
                connection_id=row.connection_id,
                mailbox=mailbox,
                employees=loaded.employees,
                job_id=job_id,
                status="ok",
                code="subscription_gone",
                message=message(
                    "subscription_gone", loaded.connection.locale, {"mailbox": mailbox}
                ),
            )
            await enqueue_many(
                session, [subscription_job(row.connection_id, mailbox, recreate=True)]
            )

    async def delete(
        self,
        *,
        connection_id: int,
        mailbox: str,
        graph_subscription_id: str,
        job_id: int | None,
        credentials: Mapping[str, str] | None = None,
        now: datetime | None = None,
    ) -> None:
        """Delete the subscription in Graph (404: already gone) and say so in the history.

        When the connection is gone, the `credentials` the job carries sign the delete (and
        there is no history left to write to); without them Graph lets it expire.
        """
        async with self.database.session_scope() as session:
            connection = await repo.connection(session, connection_id)
        deleted = connection is None
        if connection is None:
            if credentials is None:
                return
            # Never added to a session: only what a Graph client is built from.
            connection = Connection(
                id=connection_id,
                tenant=credentials["tenant"],
                client_id=credentials["client_id"],
                client_secret_encrypted=credentials["client_secret_encrypted"],
            )
        client = self._client(connection)
        try:
            result = await client.delete_subscription(graph_subscription_id)
            request_id = result.request_id
        except ItemNotFound:
            request_id = None
        except GraphError as exc:
            if not deleted:
                await self._rejected(connection, exc, mailbox, now)
            raise job_error(exc) from exc
        if deleted:
            log.info("subscription of %s deleted with its connection", mailbox)
            return
        async with self.database.session_scope() as session:
            await repo.add_records(
                session,
                connection_id=connection_id,
                mailbox=mailbox,
                employees=[],
                job_id=job_id,
                status="ok",
                code="subscription_deleted",
                message=message("subscription_deleted", connection.locale, {"mailbox": mailbox}),
                details={"subscription_id": graph_subscription_id},
                graph_request_id=request_id,
            )

    async def _disable(
        self,
        session: AsyncSession,
        row: Subscription,
        employees: list[str],
        reason: tuple[str, dict[str, Any]],
        locale: str,
        job_id: int | None,
        now: datetime,
    ) -> None:
        code, params = reason
        text = message(code, locale, params)
        if row.state == DISABLED and row.last_error_code == code:
            return  # said once is enough
        row.state = DISABLED
        row.last_error_at = now
        row.last_error_code = code
        row.last_error_message = text
        await repo.add_records(
            session,
            connection_id=row.connection_id,
            mailbox=row.mailbox,
            employees=employees,
            job_id=job_id,
            status="skipped",
            code=code,
            message=text,
        )

    async def _failed(
        self,
        loaded: _Loaded,
        mailbox: str,
        error: GraphError,
        job_id: int | None,
        now: datetime,
        *,
        keep_state: bool = False,
        retryable: bool = False,
    ) -> None:
        connection = loaded.connection
        code, params = error_code(
            error, mailbox=mailbox, tenant=connection.tenant, client_id=connection.client_id
        )
        reason = message(code, connection.locale, params)
        text = message(
            "subscription_failed", connection.locale, {"mailbox": mailbox, "reason": reason}
        )
        async with self.database.session_scope() as session:
            await client_secrets.mark_rejected(
                session, connection_id=connection.id, code=code, now=now
            )
            row = await repo.get_by_id(session, loaded.row_id)
            if row is None:
                return
            if not keep_state:
                # A retryable failure stays pending (the queue tries again); a permanent one
                # waits for the admin (or the next upkeep) as failed.
                row.state = FAILED if error.permanent and not retryable else PENDING
            row.last_error_at = now
            row.last_error_code = code
            row.last_error_message = text
            await repo.add_records(
                session,
                connection_id=connection.id,
                mailbox=mailbox,
                employees=loaded.employees,
                job_id=job_id,
                status="failed",
                code=code,
                message=text,
                details={"graph_code": error.code, "status": error.status},
                graph_request_id=error.request_id,
            )
        log.warning("subscription of %s: %s", mailbox, code)

    async def _rejected(
        self, connection: Connection, error: GraphError, mailbox: str, now: datetime | None
    ) -> None:
        """Record on the connection when Entra refused its client secret."""
        code, _ = error_code(
            error, mailbox=mailbox, tenant=connection.tenant, client_id=connection.client_id
        )
        if code in client_secrets.REJECTION_CODES:
            async with self.database.session_scope() as session:
                await client_secrets.mark_rejected(
                    session, connection_id=connection.id, code=code, now=now
                )

    async def upkeep(self, *, now: datetime) -> int:
        """Queue what the subscriptions need: renewal within `renew_before_minutes` of expiry,
        creation where none is live (pending, failed, disabled once a public URL is set).
        Returns the jobs queued."""
        renew_at = now + timedelta(minutes=self.settings.outlook.renew_before_minutes)
        jobs: list[NewJob] = []
        async with self.database.session_scope() as session:
            for row in await repo.all_rows(session):
                if row.state == ACTIVE and row.graph_subscription_id is not None:
                    if row.expires_at is None or row.expires_at <= now:
                        jobs.append(subscription_job(row.connection_id, row.mailbox, recreate=True))
                    elif row.expires_at <= renew_at:
                        jobs.append(renew_job(row.connection_id, row.mailbox))
                elif row.state == DISABLED:
                    if disabled_reason(self.settings, row.mailbox) is None:
                        jobs.append(subscription_job(row.connection_id, row.mailbox))
                    else:
                        continue
                else:
                    jobs.append(subscription_job(row.connection_id, row.mailbox))
            queued = await enqueue_many(session, jobs)
        return sum(1 for job_id in queued.values() if job_id is not None)


def _same_resource(
    other: GraphSubscription, resource: str, mailbox: str, user_id: str | None
) -> bool:
    names = {resource.casefold(), f"/{resource}".casefold()}
    names |= {f"users/{mailbox}/events", f"/users/{mailbox}/events"}
    if user_id:
        names |= {f"users/{user_id}/events".casefold(), f"/users/{user_id}/events".casefold()}
    return other.resource.casefold() in names


async def _delete_quietly(client: GraphClient, graph_id: str) -> None:
    try:
        await client.delete_subscription(graph_id)
    except ItemNotFound:
        pass


async def _user_id(client: GraphClient, mailbox: str) -> str | None:
    """The mailbox owner's object id, which notifications name instead of the address.

    Reading it needs User.Read.All besides Calendars.ReadWrite; without that permission the
    subscription names the mailbox by address and notifications are matched by the address.
    """
    try:
        return (await client.get_user(mailbox)).value.id.lower()
    except AccessDenied:
        return None


# --- job handlers (bound to the process's clients in app.jobs.build_registry) -------------


def _service(ctx: JobContext, graph: GraphClients, secret_box: SecretBox) -> SubscriptionService:
    return SubscriptionService(ctx.database, ctx.settings, graph, secret_box)


async def ensure_subscription(
    ctx: JobContext, *, graph: GraphClients, secret_box: SecretBox
) -> None:
    """`subscription.ensure`."""
    await _service(ctx, graph, secret_box).ensure(
        connection_id=int(ctx.args["connection_id"]),
        mailbox=str(ctx.args["mailbox"]),
        recreate=ctx.args.get("recreate") is True,
        job_id=ctx.job_id,
        now=ctx.clock(),
    )


async def renew_subscription(
    ctx: JobContext, *, graph: GraphClients, secret_box: SecretBox
) -> None:
    """`subscription.renew`."""
    await _service(ctx, graph, secret_box).renew(
        connection_id=int(ctx.args["connection_id"]),
        mailbox=str(ctx.args["mailbox"]),
        reauthorize=ctx.args.get("reauthorize") is True,
        job_id=ctx.job_id,
        now=ctx.clock(),
    )


async def delete_subscription(
    ctx: JobContext, *, graph: GraphClients, secret_box: SecretBox
) -> None:
    """`subscription.delete`."""
    credentials = ctx.args.get("credentials")
    await _service(ctx, graph, secret_box).delete(
        connection_id=int(ctx.args["connection_id"]),
        mailbox=str(ctx.args["mailbox"]),
        graph_subscription_id=str(ctx.args["graph_subscription_id"]),
        job_id=ctx.job_id,
        credentials={str(k): str(v) for k, v in credentials.items()}
        if isinstance(credentials, dict)
        else None,
        now=ctx.clock(),
    )


async def subscription_upkeep(
    ctx: JobContext, *, graph: GraphClients, secret_box: SecretBox
) -> None:
    """Periodic `subscription.upkeep`."""
    queued = await _service(ctx, graph, secret_box).upkeep(now=ctx.clock())
    if queued:
        log.info("subscription upkeep queued %d jobs", queued)
