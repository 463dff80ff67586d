"""Running a benchmark script of `bench/` as a user would: its one JSON line, parsed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent.parent / "bench"


def one_line(script: str, *args: str, timeout: float = 120) -> dict[str, Any]:
    """Run `bench/<script>` with `args`; it must exit 0 and print exactly one JSON line."""
    completed = subprocess.run(
        [sys.executable, str(BENCH / script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, completed.stdout
    result: dict[str, Any] = json.loads(lines[0])
    return result
