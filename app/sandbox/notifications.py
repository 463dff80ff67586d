"""Delivery to subscribers, on the sandbox server's own event loop: the validation handshake,
batched change notifications with retries, and lifecycle notifications (graph-protocol.md §1)."""

from __future__ import annotations

import asyncio
import base64
import secrets
import ssl
import time
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import httpx

from app.sandbox.state import Change, SandboxState
from app.sandbox.subscription_store import (
    Delivery,
    DeliveryKind,
    LifecycleEvent,
    Subscription,
    SubscriptionStore,
)

JSON_UTF8 = "application/json; charset=utf-8"
# Graph's real tokens read like this; spaces and a colon make a client that skips URL-decoding fail.
VALIDATION_TEXT = (
    "Validation: Testing client application reachability for subscription Request-Id: "
)
NOT_200 = (
    "Subscription validation request failed. Notification endpoint must respond with 200 OK to"
    " validation request."
)
MISMATCH = (
    "Subscription validation request failed. Response must exactly match validationToken query"
    " parameter."
)
TIMED_OUT = "Subscription validation request timed out."


def graph_time(moment: datetime) -> str:
    """Graph's 7-digit UTC form, e.g. 2016-11-20T18:23:45.9356913Z."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond:06d}0Z"


def _notification_id() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(24)).decode().rstrip("=")


def lifecycle_item(sub: Subscription, event: LifecycleEvent) -> dict[str, Any]:
    # §1.5: lifecycle notifications carry no changeType, resource or resourceData.
    return {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": graph_time(sub.expires_at),
        "tenantId": sub.tenant_id,
        "clientState": sub.client_state,
        "lifecycleEvent": event,
    }


class Notifier:
    """Bound to one event loop (the server's). `on_change` and `fire_lifecycle` may be called
    from any thread; everything else runs on the loop."""

    def __init__(
        self, store: SubscriptionStore, state: SandboxState, loop: asyncio.AbstractEventLoop
    ) -> None:
        self._store = store
        self._state = state
        self._loop = loop
        self._pending: dict[str, list[dict[str, Any]]] = {}  # by URL; loop only
        self._tasks: set[asyncio.Task[None]] = set()
        self._resumed = asyncio.Event()
        if not store.paused:
            self._resumed.set()
        # The REST id of every event seen, so a `deleted` notification can still name it.
        self._rest_ids: dict[str, str] = {}
        self._ssl: ssl.SSLContext | None = None
        self._ssl_ca: str | None = None

    # Any thread ------------------------------------------------------------------------------
    def remember_mailbox(self, user_id: str) -> None:
        """Learn the REST ids of events that exist before a subscription starts."""
        with self._state.lock:
            mailbox = self._state.mailboxes.get(user_id)
            events = list(mailbox.events.values()) if mailbox else []
            for event in events:
                self._rest_ids[event.immutable_id] = event.rest_id

    def on_change(self, change: Change) -> None:
        """Listener on SandboxState (called under its lock): queue one item per subscription
        and change type; a new event is both `created` and `updated` (§1.3)."""
        now = self._state.clock.now()
        subscriptions = self._store.for_user(change.user_id, now)
        mailbox = self._state.mailboxes.get(change.user_id)
        event = mailbox.events.get(change.event_id) if mailbox else None
        if event is not None:
            self._rest_ids[event.immutable_id] = event.rest_id
        rest_id = self._rest_ids.get(change.event_id, change.event_id)
        if change.change_type == "deleted":
            self._rest_ids.pop(change.event_id, None)
        kinds = ("created", "updated") if change.change_type == "created" else (change.change_type,)
        by_url: dict[str, list[dict[str, Any]]] = {}
        for sub in subscriptions:
            if sub.suspended:
                continue  # §1.5: changes during a reauthorization pause are lost
            event_id = change.event_id if sub.immutable_ids else rest_id
            for kind in kinds:
                if kind not in sub.change_types:
                    continue
                path = f"Users/{change.user_id}/Events/{event_id}"
                resource_data: dict[str, Any] = {
                    "@odata.type": "#Microsoft.Graph.Event",
                    "@odata.id": path,
                }
                if event is not None:
                    resource_data["@odata.etag"] = f'W/"{event.change_key}"'
                resource_data["id"] = event_id
                by_url.setdefault(sub.notification_url, []).append(
                    {
                        "id": _notification_id(),
                        "subscriptionId": sub.id,
                        "subscriptionExpirationDateTime": graph_time(sub.expires_at),
                        "changeType": kind,
                        "resource": path,
                        "resourceData": resource_data,
                        "clientState": sub.client_state,
                        "tenantId": sub.tenant_id,
                    }
                )
        for url, items in by_url.items():
            self._call_soon(self._enqueue, url, items)

    def fire_lifecycle(self, sub: Subscription, event: LifecycleEvent) -> None:
        if sub.lifecycle_notification_url is None:
            raise ValueError(f"subscription {sub.id} has no lifecycleNotificationUrl")
        body = {"value": [lifecycle_item(sub, event)]}
        self._call_soon(self._spawn, self._send("lifecycle", sub.lifecycle_notification_url, body))

    def set_paused(self, paused: bool) -> None:
        self._call_soon(self._resumed.clear if paused else self._resumed.set)

    def _call_soon(self, callback: Any, *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(callback, *args)
        except RuntimeError:
            # The server has stopped; like Graph, undeliverable notifications are dropped.
            for arg in args:
                if asyncio.iscoroutine(arg):
                    arg.close()

    # The loop --------------------------------------------------------------------------------
    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _enqueue(self, url: str, items: list[dict[str, Any]]) -> None:
        first = url not in self._pending
        self._pending.setdefault(url, []).extend(items)
        if first:
            self._spawn(self._flush_later(url))

    async def _flush_later(self, url: str) -> None:
        # Changes that land within the window go out in one POST (§1.3 batching).
        await asyncio.sleep(self._store.config.batch_window)
        items = self._pending.pop(url, [])
        size = self._store.config.max_batch
        for start in range(0, len(items), size):
            self._spawn(self._send("notification", url, {"value": items[start : start + size]}))

    def _verify(self) -> ssl.SSLContext:
        ca_file = self._store.config.ca_file
        if self._ssl is None or self._ssl_ca != ca_file:
            context = ssl.create_default_context()
            if ca_file:
                context.load_verify_locations(ca_file)
            self._ssl, self._ssl_ca = context, ca_file
        return self._ssl

    async def _post(
        self, url: str, *, limit: float, **kwargs: Any
    ) -> tuple[httpx.Response | None, str | None, float]:
        started = time.monotonic()
        try:
            async with httpx.AsyncClient(verify=self._verify(), timeout=limit) as client:
                response = await client.post(url, **kwargs)
            return response, None, time.monotonic() - started
        except httpx.TimeoutException as exc:
            return None, f"timeout: {exc!r}", time.monotonic() - started
        except httpx.HTTPError as exc:
            return None, f"{type(exc).__name__}: {exc}", time.monotonic() - started

    async def _send(self, kind: DeliveryKind, url: str, body: dict[str, Any]) -> None:
        config = self._store.config
        attempts = len(config.retry_delays) + 1
        for attempt in range(1, attempts + 1):
            await self._resumed.wait()
            response, error, elapsed = await self._post(
                url, limit=config.timeout, json=body, headers={"Content-Type": JSON_UTF8}
            )
            status = response.status_code if response is not None else None
            ok = status is not None and 200 <= status < 300
            final = ok or attempt == attempts
            # Simplified from §1.4: a slow answer is recorded, not throttled into "slow" state.
            slow = elapsed > config.slow_after
            self._store.log.add(
                Delivery(kind, url, body, attempt, status, error, elapsed, slow, final)
            )
            if final:
                return
            await asyncio.sleep(config.retry_delays[attempt - 1])

    async def validate(self, url: str) -> str | None:
        """The handshake of §1.2; returns Graph's error message, or None when it passed."""
        token = VALIDATION_TEXT + str(uuid.uuid4())
        target = f"{url}{'&' if '?' in url else '?'}validationToken={quote(token, safe='')}"
        response, error, elapsed = await self._post(
            target,
            limit=self._store.config.validation_timeout,
            content=b"",
            headers={"Content-Type": "text/plain; charset=utf-8"},
        )
        status = response.status_code if response is not None else None
        if response is None:
            problem: str | None = TIMED_OUT if error and error.startswith("timeout") else NOT_200
        elif status != 200:
            problem = NOT_200
        elif not response.headers.get("content-type", "").startswith("text/plain") or (
            response.text != token
        ):
            problem = MISMATCH
        else:
            problem = None
        self._store.log.add(
            Delivery(
                "validation",
                target,
                None,
                1,
                status,
                problem or error,
                elapsed,
                elapsed > self._store.config.slow_after,
                True,
            )
        )
        return problem
