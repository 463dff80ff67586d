"""Sample bookingtime appointments (tests/fixtures/bookingtime) for the pure sync core."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).parent.parent / "fixtures" / "bookingtime"
ORG = "f6Kq3ZbW8nTx2LmR5vYc9HdJ4pGs7aEu"
MAX = "brM4tQ8xZ1nV6kS3wL9pC2bH7fJ5dR0y"


def appointment(sample: str = "created", /, **changes: Any) -> dict[str, Any]:
    """The `appointment` of tests/fixtures/bookingtime/appointment_<sample>.json, with changes."""
    payload = json.loads((FIXTURES / f"appointment_{sample}.json").read_text("utf-8"))
    result: dict[str, Any] = copy.deepcopy(payload["data"]["appointment"])
    result.update(changes)
    return result
