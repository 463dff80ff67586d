"""Graph subscriptions of each mapped mailbox, as the subscription jobs keep them: create,
renew before expiry, reauthorize, recreate when Graph lost them, delete when the mapping goes.

Every Graph call runs in a job, never in a request, and no transaction is held open across
one: each step's database work is its own short transaction. Failures show in the
subscription row's `last_error_*` and the sync history; the Graph error then propagates and
the queue decides on the retry. Entra refusing the client secret marks the connection's secret
`rejected`, as a sync does. The Graph calls beyond one request are in graph_calls.py, what
is stored of each outcome in outcomes.py.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from app.busy.keys import mailbox_key
from app.config import Settings
from app.credentials import secrets as client_secrets
from app.credentials.clients import GraphClients
from app.crypto import SecretBox, SecretKeyError
from app.db import Database
from app.graph.client import GraphClient
from app.graph.errors import GraphError, ItemNotFound
from app.history.messages import error_code, message
from app.models import Connection, Subscription
from app.notifications import outcomes
from app.notifications import repository as repo
from app.notifications.graph_calls import (
    create_subscription,
    delete_quietly,
    new_client_state,
    owner_id,
)
from app.notifications.outcomes import Target
from app.notifications.service import ACTIVE, DISABLED, PENDING, disabled_reason, queue_upkeep
from app.notifications.tasks import subscription_job
from app.queue.errors import PermanentError, RetryAfter
from app.queue.repository import enqueue_many

log = logging.getLogger(__name__)

# graph-protocol.md §1.5: reauthorize and PATCH of one subscription at least this far apart.
REAUTHORIZE_GAP = timedelta(minutes=10)


class HandshakeFailed(Exception):
    """Graph refused a create because calbridge's endpoint failed its validation request.

    Graph answers 400, which reads as permanent, but the cause usually passes (the API is
    starting, being deployed, or was briefly slow), so the job retries with the queue's backoff
    instead of waiting for the next upkeep.
    """


def _handshake_failed(error: GraphError) -> bool:
    # §1.2: "Subscription validation request failed. …" / "… validation request timed out."
    return error.status == 400 and "validation request" in error.message.casefold()


@dataclass(frozen=True)
class _Loaded:
    """What a job read of the subscription row before calling Graph (no session held open)."""

    target: Target
    row_id: int
    graph_subscription_id: str | None
    graph_user_id: str | None
    last_renewed_at: datetime | None
    last_reauthorized_at: datetime | None


def _loaded(target: Target, row: Subscription) -> _Loaded:
    return _Loaded(
        target,
        row.id,
        row.graph_subscription_id,
        row.graph_user_id,
        row.last_renewed_at,
        row.last_reauthorized_at,
    )


@dataclass
class Subscriber:
    """The subscription jobs' work: the process's database, settings, Graph clients, secrets."""

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
        mailbox = mailbox_key(mailbox)
        async with self.database.session_scope() as session:
            connection = await repo.connection(session, connection_id)
            if connection is None:
                return
            employees = await repo.mailbox_employees(
                session, connection_id=connection_id, mailbox=mailbox
            )
            if not employees:
                return  # unmapped since the job was queued; release_mailbox cleaned up
            target = Target(connection, mailbox, employees, job_id)
            row = await repo.get_or_add(session, connection_id=connection_id, mailbox=mailbox)
            off = disabled_reason(self.settings, mailbox)
            if off is not None:
                await outcomes.disable(session, row, target, off, now=now)
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
            loaded = _loaded(target, row)
        client = self._client(connection)
        client_state = new_client_state()
        try:
            if loaded.graph_subscription_id is not None:
                await delete_quietly(client, loaded.graph_subscription_id)
            user_id = loaded.graph_user_id or await owner_id(client, mailbox)
            created = await create_subscription(
                client,
                self.settings,
                mailbox=mailbox,
                user_id=user_id,
                client_state=client_state,
                now=now,
            )
        except GraphError as exc:
            handshake = _handshake_failed(exc)
            await self._failed(loaded, exc, now, retryable=handshake)
            if handshake:
                raise HandshakeFailed(str(exc)) from exc
            raise

        async with self.database.session_scope() as session:
            kept = await outcomes.store_created(
                session,
                target,
                created=created.value,
                request_id=created.request_id,
                user_id=user_id,
                client_state_encrypted=self.secret_box.encrypt(client_state),
                recreate=recreate,
            )
        if not kept:
            await delete_quietly(client, created.value.id)
            return
        log.info("subscription of %s created (recreate=%s)", mailbox, recreate)

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
        mailbox = mailbox_key(mailbox)
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
            target = Target(connection, mailbox, employees, job_id)
            loaded = _loaded(target, row)
        graph_id = loaded.graph_subscription_id
        assert graph_id is not None
        # Reauthorize and PATCH of one subscription must be 10 minutes apart (§1.5).
        other = loaded.last_renewed_at if reauthorize else loaded.last_reauthorized_at
        if other is not None and now - other < REAUTHORIZE_GAP:
            raise RetryAfter(
                at=other + REAUTHORIZE_GAP,
                message="reauthorize and renew of one subscription must be 10 minutes apart",
            )
        client = self._client(connection)
        try:
            if reauthorize:
                result: Any = await client.reauthorize_subscription(graph_id)
            else:
                expiration = now + timedelta(minutes=self.settings.outlook.subscription_minutes)
                result = await client.renew_subscription(graph_id, expiration)
        except ItemNotFound:
            async with self.database.session_scope() as session:
                await outcomes.mark_gone(session, target, row_id=loaded.row_id)
            return
        except GraphError as exc:
            await self._failed(loaded, exc, now, keep_state=True)
            raise
        async with self.database.session_scope() as session:
            await outcomes.store_renewed(
                session,
                target,
                graph_subscription_id=graph_id,
                reauthorized=reauthorize,
                expires_at=None if reauthorize else result.value.expiration_date_time,
                request_id=result.request_id,
                now=now,
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
            raise
        if deleted:
            log.info("subscription of %s deleted with its connection", mailbox)
            return
        async with self.database.session_scope() as session:
            # The mapping is gone: the record names no employee.
            await Target(connection, mailbox, [], job_id).add_records(
                session,
                status="ok",
                code="subscription_deleted",
                message=message("subscription_deleted", connection.locale, {"mailbox": mailbox}),
                details={"subscription_id": graph_subscription_id},
                graph_request_id=request_id,
            )

    async def _failed(
        self,
        loaded: _Loaded,
        error: GraphError,
        now: datetime,
        *,
        keep_state: bool = False,
        retryable: bool = False,
    ) -> None:
        async with self.database.session_scope() as session:
            code = await outcomes.record_failure(
                session,
                loaded.target,
                row_id=loaded.row_id,
                error=error,
                now=now,
                keep_state=keep_state,
                retryable=retryable,
            )
        log.warning("subscription of %s: %s", loaded.target.mailbox, code)

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
        """Queue what the subscriptions need (`service.queue_upkeep`); the jobs queued."""
        async with self.database.session_scope() as session:
            return await queue_upkeep(session, self.settings, now=now)
