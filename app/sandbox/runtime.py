"""The live parts one sandbox instance shares between its HTTP routes and its control API."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.sandbox.delta_store import DeltaStore
from app.sandbox.faults import Faults
from app.sandbox.state import SandboxState
from app.sandbox.subscription_store import SubscriptionStore
from app.sandbox.throttle import Throttle


@dataclass
class Runtime:
    state: SandboxState = field(default_factory=SandboxState)
    faults: Faults = field(default_factory=Faults)
    throttle: Throttle = field(default_factory=Throttle)
    delta: DeltaStore = field(default_factory=DeltaStore)
    subscriptions: SubscriptionStore = field(default_factory=SubscriptionStore)
