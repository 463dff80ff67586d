"""Graph + Entra emulator for tests, benchmarks and the demo (see DESIGN.md "Sandbox").

Nothing in `app/` outside this package imports it."""

from app.sandbox.control import Control, DemoSetup
from app.sandbox.server import SandboxServer
from app.sandbox.throttle import ThrottleLimits

__all__ = ["Control", "DemoSetup", "SandboxServer", "ThrottleLimits"]
