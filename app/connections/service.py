"""Connections: create, update, read and delete them, and the lookups every adapter shares (a
connection, an employee, with their 404 problems). Never commits."""

from __future__ import annotations

import base64
import hmac
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.connections import repository
from app.connections.bookingtime_schemas import BookingtimeApiIn
from app.connections.schemas import ConnectionIn, event_settings_of
from app.connections.tenant import GLOBAL_AUTHORITY_HOSTS, InvalidTenantError, normalize_tenant
from app.credentials.secrets import reset_for_new_secret
from app.crypto import SecretBox, SecretKeyError
from app.http.problems import ProblemError
from app.models import Connection, Employee
from app.models.base import utcnow
from app.notifications import service as subscriptions
from app.queue.repository import enqueue_many
from app.sync.tasks import resync_job

DEFAULT_LOCALE = "de"
WEBHOOK_SECRET_BYTES = 32
# The default of CALBRIDGE_WEBHOOK_SECRET_GRACE_SECONDS.
DEFAULT_WEBHOOK_SECRET_GRACE = timedelta(days=1)


class ConnectionNotFoundError(ProblemError):
    """No connection exists for the organisation."""

    def __init__(self, organization_id: str) -> None:
        super().__init__(
            404,
            "connection_not_found",
            "Connection not found",
            f"no connection for organization {organization_id!r}",
        )


class EmployeeNotFoundError(ProblemError):
    """The connection has no employee with that booking-resource id."""

    def __init__(self, organization_id: str, employee_id: str) -> None:
        super().__init__(
            404,
            "employee_not_found",
            "Employee not found",
            f"organization {organization_id!r} has no employee {employee_id!r}",
        )


class InvalidFieldError(ProblemError):
    """A 422 found after parsing, shaped like the request-validation ones (`errors[].field`)."""

    def __init__(self, field: str, message: str, *, detail: str | None = None) -> None:
        super().__init__(
            422,
            "validation_failed",
            "The request is not valid",
            detail or f"invalid or missing: {field}",
            errors=[{"field": field, "message": message}],
        )


class ConcurrentChangeError(ProblemError):
    """Another request created the same row between our read and our insert."""

    def __init__(self) -> None:
        super().__init__(
            409,
            "conflict",
            "Changed concurrently",
            "another request changed the same resource at the same time; retry",
        )


@dataclass(frozen=True)
class ConnectionSummary:
    """A connection and how many employees it maps."""

    connection: Connection
    employee_count: int


@dataclass(frozen=True)
class PutConnectionResult:
    """The outcome of a PUT: the connection, whether it is new, and a secret generated for it."""

    summary: ConnectionSummary
    created: bool
    generated_webhook_secret: str | None


def generate_webhook_secret() -> str:
    """A new Standard Webhooks secret: `whsec_` and the base64 of 32 random bytes."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(WEBHOOK_SECRET_BYTES)).decode("ascii")


def _same_secret(secret_box: SecretBox, stored: str, given: str) -> bool:
    # Stored under a key that is gone (None): sending the secret again is how an admin repairs it.
    current = secret_box.decrypt_or_none(stored)
    return current is not None and hmac.compare_digest(current.encode(), given.encode())


async def get_connection(session: AsyncSession, *, organization_id: str) -> Connection:
    """The organisation's connection, or ConnectionNotFoundError."""
    connection = await repository.get_connection(session, organization_id)
    if connection is None:
        raise ConnectionNotFoundError(organization_id)
    return connection


async def get_connection_summary(
    session: AsyncSession, *, organization_id: str
) -> ConnectionSummary:
    """The organisation's connection with its employee count, or ConnectionNotFoundError."""
    connection = await get_connection(session, organization_id=organization_id)
    count = await repository.count_employees(session, connection_id=connection.id)
    return ConnectionSummary(connection, count)


async def list_connections(session: AsyncSession) -> list[ConnectionSummary]:
    """Every connection with its employee count, ordered by organisation id."""
    rows = await repository.list_connections_with_counts(session)
    return [ConnectionSummary(connection, count) for connection, count in rows]


async def put_connection(
    session: AsyncSession,
    *,
    secret_box: SecretBox,
    organization_id: str,
    data: ConnectionIn,
    authority_hosts: Iterable[str] = GLOBAL_AUTHORITY_HOSTS,
    webhook_secret_grace: timedelta = DEFAULT_WEBHOOK_SECRET_GRACE,
    now: datetime | None = None,
) -> PutConnectionResult:
    """Create or update the organisation's connection; secrets are stored encrypted. A new
    webhook secret leaves the replaced one valid for `webhook_secret_grace`."""
    try:
        tenant = normalize_tenant(data.tenant, authority_hosts=authority_hosts)
    except InvalidTenantError as exc:
        raise InvalidFieldError("tenant", exc.reason, detail=str(exc)) from exc
    client_secret = data.client_secret.get_secret_value() if data.client_secret else None
    webhook_secret = data.webhook_secret.get_secret_value() if data.webhook_secret else None

    connection = await repository.get_connection(session, organization_id)
    if connection is None:
        if client_secret is None:
            raise InvalidFieldError("client_secret", "required when the connection is created")
        generated = None
        if webhook_secret is None:
            webhook_secret = generated = generate_webhook_secret()
        connection = Connection(
            organization_id=organization_id,
            tenant=tenant,
            client_id=str(data.client_id),
            client_secret_encrypted=secret_box.encrypt(client_secret),
            client_secret_expires_at=data.expires_at_utc,
            webhook_secret_encrypted=secret_box.encrypt(webhook_secret),
            locale=data.locale or DEFAULT_LOCALE,
            event_settings=_stored(data),
            created_at=(now := utcnow()),
            updated_at=now,
        )
        if data.bookingtime_api is not None:
            apply_bookingtime_api(connection, data.bookingtime_api, secret_box=secret_box)
        try:
            await repository.add_connection(session, connection)
        except IntegrityError as exc:
            raise ConcurrentChangeError() from exc
        return PutConnectionResult(ConnectionSummary(connection, 0), True, generated)

    credentials_before = (connection.tenant, connection.client_id)
    connection.tenant = tenant
    connection.client_id = str(data.client_id)
    new_client_secret = False
    if client_secret is not None and not _same_secret(
        secret_box, connection.client_secret_encrypted, client_secret
    ):
        connection.client_secret_encrypted = secret_box.encrypt(client_secret)
        new_client_secret = True
    expiry_before = connection.client_secret_expires_at
    if "client_secret_expires_at" in data.model_fields_set:
        connection.client_secret_expires_at = data.expires_at_utc
    elif new_client_secret:
        # The stored date described the replaced secret; keeping it would warn about the wrong one.
        connection.client_secret_expires_at = None
    reset_for_new_secret(
        connection,
        new_secret=new_client_secret,
        new_expiry=connection.client_secret_expires_at != expiry_before,
    )
    if webhook_secret is not None and not _same_secret(
        secret_box, connection.webhook_secret_encrypted, webhook_secret
    ):
        rotate_webhook_secret(
            connection,
            secret_box=secret_box,
            new_secret=webhook_secret,
            grace=webhook_secret_grace,
            now=now or utcnow(),
        )
    if "bookingtime_api" in data.model_fields_set:
        apply_bookingtime_api(connection, data.bookingtime_api, secret_box=secret_box)
    looks_before = (connection.locale, event_settings_of(connection))
    if data.locale is not None:
        connection.locale = data.locale
    if data.event_settings is not None:
        connection.event_settings = _stored(data)
    fanouts = []
    if new_client_secret or (connection.tenant, connection.client_id) != credentials_before:
        # What failed for want of working credentials (writes, removals) catches up now; what
        # is already in step costs no Graph call.
        fanouts.append(resync_job(connection.id, "backfill"))
    if (connection.locale, event_settings_of(connection)) != looks_before:
        # Otherwise events already written keep the old look until their appointment changes.
        fanouts.append(resync_job(connection.id, "settings_changed"))
    await enqueue_many(session, fanouts)
    await session.flush()
    count = await repository.count_employees(session, connection_id=connection.id)
    return PutConnectionResult(ConnectionSummary(connection, count), False, None)


@dataclass(frozen=True)
class SecretRotation:
    """A PUT that replaces an existing connection's client secret: what to verify it with."""

    connection: Connection
    tenant: str
    client_id: str
    client_secret: str


async def rotated_client_secret(
    session: AsyncSession,
    *,
    secret_box: SecretBox,
    organization_id: str,
    data: ConnectionIn,
    authority_hosts: Iterable[str] = GLOBAL_AUTHORITY_HOSTS,
) -> SecretRotation | None:
    """The rotation `data` asks for, so the new secret can be verified before it is stored;
    None when the connection is new (creation is never blocked on Entra) or keeps its secret."""
    if data.client_secret is None:
        return None
    secret = data.client_secret.get_secret_value()
    connection = await repository.get_connection(session, organization_id)
    if connection is None:
        return None
    try:
        current = secret_box.decrypt(connection.client_secret_encrypted)
    except SecretKeyError:
        # Stored under a key that is gone: there is no working secret to protect, and sending
        # it again is how an admin repairs the connection, Entra reachable or not.
        return None
    if hmac.compare_digest(current.encode(), secret.encode()):
        return None
    try:
        tenant = normalize_tenant(data.tenant, authority_hosts=authority_hosts)
    except InvalidTenantError as exc:
        raise InvalidFieldError("tenant", exc.reason, detail=str(exc)) from exc
    return SecretRotation(connection, tenant, str(data.client_id), secret)


def rotate_webhook_secret(
    connection: Connection,
    *,
    secret_box: SecretBox,
    new_secret: str,
    grace: timedelta,
    now: datetime,
) -> None:
    """Store `new_secret`; the one it replaces stays valid until now + `grace`.

    Only one previous secret is kept: a second rotation within the grace period replaces it with
    the secret being replaced now (the older one stops at once), and restarts the period. A zero
    grace, or a replaced secret that can no longer be decrypted, keeps none.
    """
    replaced: str | None = connection.webhook_secret_encrypted
    if (
        grace <= timedelta(0)
        or secret_box.decrypt_or_none(connection.webhook_secret_encrypted) is None
    ):
        replaced = None
    connection.previous_webhook_secret_encrypted = replaced
    connection.previous_webhook_secret_expires_at = None if replaced is None else now + grace
    connection.webhook_secret_encrypted = secret_box.encrypt(new_secret)


def apply_bookingtime_api(
    connection: Connection, data: BookingtimeApiIn | None, *, secret_box: SecretBox
) -> None:
    """Store the bookingtime app's settings (None: turn the connector off, forgetting them).

    The secret may be omitted with the stored client id; new credentials forget what was found
    with the old ones, so the state reads `unchecked` until the next verify or poll.
    """
    if data is None:
        connection.bookingtime_client_id = None
        connection.bookingtime_client_secret_encrypted = None
        connection.bookingtime_busy_writeback = False
        connection.bookingtime_busy_exception_type = None
        _forget_bookingtime_state(connection)
        connection.bookingtime_last_poll_at = None
        return
    secret = data.client_secret.get_secret_value() if data.client_secret else None
    stored_secret = connection.bookingtime_client_secret_encrypted
    same_app = data.client_id == connection.bookingtime_client_id and stored_secret is not None
    if secret is None and not same_app:
        raise InvalidFieldError(
            "bookingtime_api.client_secret",
            "required with a new client_id",
            detail="invalid or missing: bookingtime_api.client_secret",
        )
    new_secret = secret is not None and (
        stored_secret is None or not _same_secret(secret_box, stored_secret, secret)
    )
    if secret is not None and new_secret:
        connection.bookingtime_client_secret_encrypted = secret_box.encrypt(secret)
    if not same_app or new_secret:
        _forget_bookingtime_state(connection)
    connection.bookingtime_client_id = data.client_id
    connection.bookingtime_busy_writeback = data.busy_writeback
    connection.bookingtime_busy_exception_type = data.busy_exception_type


def _forget_bookingtime_state(connection: Connection) -> None:
    connection.bookingtime_state = None
    connection.bookingtime_checked_at = None
    connection.bookingtime_error_code = None
    connection.bookingtime_error_params = None


def _stored(data: ConnectionIn) -> dict[str, object] | None:
    if data.event_settings is None:
        return None
    return data.event_settings.model_dump(mode="json")


async def delete_connection(session: AsyncSession, *, organization_id: str) -> None:
    """Delete the organisation's connection with its employees, snapshots, inbox and history;
    its Graph subscriptions are deleted in Graph by jobs queued in the same transaction."""
    connection = await get_connection(session, organization_id=organization_id)
    # Queued before the row (and with it the credentials) goes; each job carries what it needs.
    await subscriptions.release_connection(session, connection=connection)
    await repository.delete_connection(session, connection)


async def get_employee(
    session: AsyncSession, *, organization_id: str, employee_id: str
) -> Employee:
    """One employee of the organisation, or ConnectionNotFoundError / EmployeeNotFoundError."""
    connection = await get_connection(session, organization_id=organization_id)
    employee = await repository.get_employee(
        session, connection_id=connection.id, booking_resource_id=employee_id
    )
    if employee is None:
        raise EmployeeNotFoundError(organization_id, employee_id)
    return employee
