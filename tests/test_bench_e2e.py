"""bench/e2e.py end to end at a tiny size: real processes (sandbox, calbridge serve with its
worker, SQLite), one JSON line, no duplicates, every mailbox as expected."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent.parent / "bench" / "e2e.py"

FIELDS = {
    "graph_ops_per_s",
    "bound_ops_per_s",
    "efficiency",
    "e2e_p50_ms",
    "e2e_p99_ms",
    "throttled_429",
    "duplicates",
    "final_state_ok",
    "database",
    "workers",
    "latency_ms",
    "mailboxes",
    "appointments",
    "rate_per_s",
    "phases",
}


def test_tiny_run_prints_one_line_with_the_figures() -> None:
    completed = subprocess.run(
        [
            sys.executable,
            str(BENCH),
            "--database",
            "sqlite",
            "--mailboxes",
            "2",
            "--appointments",
            "6",
            "--latency-ms",
            "5",
            "--rate",
            "40",
            "--stall-seconds",
            "15",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, completed.stdout
    result = json.loads(lines[0])
    assert FIELDS <= result.keys()
    assert result["duplicates"] == 0
    assert result["final_state_ok"] is True, result
    assert result["throttled_429"] == 0
    assert result["graph_writes"] >= 18  # six creates, six moves, six deletes
    assert result["bound_ops_per_s"] == round(2 * 10_000 / 600, 1)  # 4/L = 800/s is higher
    assert set(result["phases"]) == {"create", "move", "cancel"}
    assert all(phase["missing"] == 0 for phase in result["phases"].values())
    assert 0 < result["e2e_p50_ms"] <= result["e2e_p99_ms"]
