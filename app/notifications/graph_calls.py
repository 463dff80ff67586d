"""The subscription jobs' Graph calls that take more than one request: a create that replaces
the subscription a crash lost track of, a delete that takes 404 as done, and the mailbox
owner's object id. No database: the jobs store what these return."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

from app.config import Settings
from app.graph.client import GraphClient
from app.graph.errors import AccessDenied, ItemNotFound, UnexpectedGraphError
from app.graph.schemas import GraphResult
from app.graph.schemas import Subscription as GraphSubscription
from app.notifications.service import lifecycle_url, notification_url

CHANGE_TYPE = "created,updated,deleted"
# 48 random bytes → 64 url-safe characters: well over 32 bytes of entropy, under Graph's 128.
CLIENT_STATE_BYTES = 48


def new_client_state() -> str:
    return secrets.token_urlsafe(CLIENT_STATE_BYTES)


async def create_subscription(
    client: GraphClient,
    settings: Settings,
    *,
    mailbox: str,
    user_id: str | None,
    client_state: str,
    now: datetime,
) -> GraphResult[GraphSubscription]:
    """Subscribe to the mailbox's events (by owner id when known) for the configured time."""
    resource = f"users/{user_id or mailbox}/events"
    expiration = now + timedelta(minutes=settings.outlook.subscription_minutes)

    async def attempt() -> GraphResult[GraphSubscription]:
        return await client.create_subscription(
            resource=resource,
            change_type=CHANGE_TYPE,
            notification_url=notification_url(settings),
            lifecycle_notification_url=lifecycle_url(settings),
            client_state=client_state,
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
            await delete_quietly(client, other.id)
    return await attempt()


def _same_resource(
    other: GraphSubscription, resource: str, mailbox: str, user_id: str | None
) -> bool:
    names = {resource.casefold(), f"/{resource}".casefold()}
    names |= {f"users/{mailbox}/events", f"/users/{mailbox}/events"}
    if user_id:
        names |= {f"users/{user_id}/events".casefold(), f"/users/{user_id}/events".casefold()}
    return other.resource.casefold() in names


async def delete_quietly(client: GraphClient, graph_id: str) -> None:
    try:
        await client.delete_subscription(graph_id)
    except ItemNotFound:
        pass


async def owner_id(client: GraphClient, mailbox: str) -> str | None:
    """The mailbox owner's object id, which notifications name instead of the address.

    Reading it needs User.Read.All besides Calendars.ReadWrite; without that permission the
    subscription names the mailbox by address and notifications are matched by the address.
    """
    try:
        return (await client.get_user(mailbox)).value.id.lower()
    except AccessDenied:
        return None
