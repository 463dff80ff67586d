"""The live parts one sandbox instance shares between its HTTP routes and its control API."""

from __future__ import annotations

from dataclasses import dataclass, field

from app.sandbox.bookingtime.store import BookingtimeStore
from app.sandbox.delta_store import DeltaStore
from app.sandbox.faults import Faults
from app.sandbox.state import SandboxState
from app.sandbox.subscription_store import SubscriptionStore
from app.sandbox.throttle import Throttle
from app.sandbox.write_log import WriteLog


@dataclass
class Runtime:
    state: SandboxState = field(default_factory=SandboxState)
    faults: Faults = field(default_factory=Faults)
    throttle: Throttle = field(default_factory=Throttle)
    delta: DeltaStore = field(default_factory=DeltaStore)
    subscriptions: SubscriptionStore = field(default_factory=SubscriptionStore)
    writes: WriteLog = field(default_factory=WriteLog)
    bookingtime: BookingtimeStore = field(init=False)

    def __post_init__(self) -> None:
        self.writes.attach(self.state)
        self.bookingtime = BookingtimeStore(self.state.clock)
