"""`calbridge demo` as a real process: the whole flow, visible in its output, exit 0."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path


def test_demo_shows_both_directions_and_the_history(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALBRIDGE_")}
    result = subprocess.run(
        [sys.executable, "-m", "app.cli", "demo"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    created = out.index("== 4. Appointments created")
    moved = out.index("== 5. Consultation moved")
    canceled = out.index("== 6. Consultation canceled")
    outlook = out.index("== 7. Outlook → calbridge")
    history = out.index("== 8. Sync history")

    def max_calendar(start: int, end: int) -> str:
        section = out[start:end]
        begin = section.index("Outlook calendar of max@contoso.example:")
        return section[begin : section.index("Outlook calendar of erika@", begin)]

    assert "10:00–11:00 (Europe/Berlin)  Consultation" in max_calendar(created, moved)
    after_move = max_calendar(moved, canceled)
    assert "14:30–15:30 (Europe/Berlin)  Consultation" in after_move
    assert "10:00–11:00" not in after_move
    assert max_calendar(canceled, outlook).splitlines()[1:] == ["  (no events)"]
    assert "Contract review" in out[canceled:outlook]  # the other mailbox is untouched

    # A meeting made in Outlook reaches the busy API through a change notification; calbridge's
    # own event in Erika's calendar is no busy block.
    reverse = out[outlook:history]
    assert "subscription on max@contoso.example: active" in reverse
    assert "subscription on erika@contoso.example: active" in reverse
    assert "busy for bookingtime:" in reverse and "09:00–10:00 (Europe/Berlin)" in reverse
    assert "(0 blocks)" in reverse

    # Every time printed says its zone: the demo's (Europe/Berlin), or UTC in a history message.
    times = list(re.finditer(r"(?<![\d:.])\d\d:\d\d(?::\d\d)?(?:–\d\d:\d\d)?( \S+)?", out))
    assert len(times) >= 10
    labels = {match.group(1) or "" for match in times}
    assert all(label == " (Europe/Berlin)" or label.startswith(" UTC") for label in labels), out

    lines = out[history:].splitlines()
    # Jonas's create failed; how far his subscription got by then depends on the machine's speed.
    [invalid] = [line for line in lines if "Jonas Beispiel" in line and " create " in line]
    assert re.match(r"  \d\d:\d\d:\d\d \(Europe/Berlin\)  Jonas Beispiel ", invalid), invalid
    assert "create" in invalid and "error" in invalid
    assert "User jonsa@contoso.example is invalid" in invalid
    assert "mistyped" in invalid
    assert any("Max Mustermann" in line and "delete" in line for line in lines)
    assert list(tmp_path.iterdir()) == []  # nothing left behind in the working directory
