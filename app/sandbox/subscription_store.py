"""Graph subscriptions and the record of what was delivered for them (routes: subscriptions.py,
delivery: notifications.py). Thread-safe: routes, the delivery loop and tests all touch it."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from app.sandbox.notifications import Notifier

# graph-protocol.md §1.1 and §1.7: expiry is raised to 45 minutes; more than 10,080 is refused.
MIN_LIFETIME = timedelta(minutes=45)
MAX_LIFETIME = timedelta(minutes=10_080)
MAILBOX_QUOTA = 1000  # active subscriptions per mailbox across all apps (§1.7)

DeliveryKind = Literal["validation", "notification", "lifecycle"]
LifecycleEvent = Literal["reauthorizationRequired", "subscriptionRemoved", "missed"]


@dataclass
class Subscription:
    id: str
    tenant_id: str
    client_id: str
    creator_id: str
    user_id: str
    resource: str  # as the client sent it; Graph echoes it unchanged
    change_types: tuple[str, ...]
    notification_url: str
    lifecycle_notification_url: str | None
    client_state: str | None
    expires_at: datetime
    latest_supported_tls_version: str
    immutable_ids: bool  # created with Prefer: IdType="ImmutableId"
    # Set by a reauthorizationRequired fired with suspend=True; changes meanwhile are lost (§1.5).
    suspended: bool = False


@dataclass(frozen=True)
class Delivery:
    """One HTTP attempt the sandbox made to a client endpoint."""

    kind: DeliveryKind
    url: str
    body: dict[str, Any] | None
    attempt: int
    status: int | None  # None: no response (timeout, refused, TLS failure)
    error: str | None
    elapsed: float
    slow: bool  # answered later than DeliveryConfig.slow_after (Graph's 3 s)
    final: bool  # no further attempt follows (delivered, or dropped after the last retry)

    @property
    def ok(self) -> bool:
        return self.status is not None and 200 <= self.status < 300


@dataclass
class DeliveryConfig:
    """Graph's timings, compressed where Graph's are hours so tests stay fast."""

    batch_window: float = 0.05  # changes this close together share one POST
    max_batch: int = 100
    validation_timeout: float = 10.0  # §1.2
    timeout: float = 10.0  # §1.4: retried requests have a 10-second timeout
    slow_after: float = 3.0  # §1.4: a 2xx within 3 s counts as delivered in time
    # §1.4 retries with exponential backoff for up to 4 hours; the sandbox retries this often.
    retry_delays: tuple[float, ...] = (0.05, 0.1, 0.2)
    # Extra CA file trusted for https endpoints besides the system store (test receivers).
    ca_file: str | None = None


class DeliveryLog:
    """Every attempt, in order; tests wait on it instead of sleeping."""

    def __init__(self) -> None:
        self._items: list[Delivery] = []
        self._cond = threading.Condition()

    def add(self, delivery: Delivery) -> None:
        with self._cond:
            self._items.append(delivery)
            self._cond.notify_all()

    def items(self) -> list[Delivery]:
        with self._cond:
            return list(self._items)

    def clear(self) -> None:
        with self._cond:
            self._items.clear()

    def wait_for(self, predicate: Callable[[list[Delivery]], bool], timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: predicate(self._items), timeout)


@dataclass
class SubscriptionStore:
    config: DeliveryConfig = field(default_factory=DeliveryConfig)
    log: DeliveryLog = field(default_factory=DeliveryLog)
    quota: int = MAILBOX_QUOTA
    # Started by the first subscription request, on the server's event loop.
    notifier: Notifier | None = None
    paused: bool = False
    _items: dict[str, Subscription] = field(default_factory=dict)
    _lock: threading.RLock = field(default_factory=threading.RLock)

    @property
    def lock(self) -> threading.RLock:
        # Order: state.lock may be held when taking this one, never the other way round.
        return self._lock

    def purge(self, now: datetime) -> None:
        """Expired subscriptions are gone, as in Graph (§1.6: a PATCH then gets 404)."""
        with self._lock:
            for sub_id in [s.id for s in self._items.values() if s.expires_at <= now]:
                del self._items[sub_id]

    def get(self, sub_id: str, now: datetime) -> Subscription | None:
        with self._lock:
            self.purge(now)
            return self._items.get(sub_id.casefold())

    def all(self, now: datetime) -> list[Subscription]:
        with self._lock:
            self.purge(now)
            return list(self._items.values())

    def add(self, subscription: Subscription) -> None:
        with self._lock:
            self._items[subscription.id] = subscription

    def remove(self, sub_id: str) -> Subscription | None:
        with self._lock:
            return self._items.pop(sub_id.casefold(), None)

    def for_user(self, user_id: str, now: datetime) -> list[Subscription]:
        with self._lock:
            self.purge(now)
            return [s for s in self._items.values() if s.user_id == user_id]
