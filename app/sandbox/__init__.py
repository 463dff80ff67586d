"""Graph + Entra emulator for tests, benchmarks and the demo.

Outside this package only these names are imported (in `app/`, only by the CLI and the demo):
a `SandboxServer`, its `Control`, and the `Faults` that `Control` injects."""

from app.sandbox.control import Control, DemoSetup
from app.sandbox.faults import FaultKind, FaultRule, Faults
from app.sandbox.server import SandboxServer, is_loopback
from app.sandbox.throttle import ThrottleLimits

__all__ = [
    "Control",
    "DemoSetup",
    "FaultKind",
    "FaultRule",
    "Faults",
    "SandboxServer",
    "ThrottleLimits",
    "is_loopback",
]
