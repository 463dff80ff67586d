"""bench/e2e.py and bench/intake.py end to end at a tiny size: real processes (sandbox, calbridge
serve with its worker, SQLite), one JSON line each with the calbridge processes' CPU per
operation; e2e also with no duplicates and every mailbox as expected."""

from __future__ import annotations

from tests.benchrun import one_line

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
    "cpu_ms_per_write",
}


def test_tiny_run_prints_one_line_with_the_figures() -> None:
    result = one_line(
        "e2e.py",
        *("--database", "sqlite", "--mailboxes", "2", "--appointments", "6"),
        *("--latency-ms", "5", "--rate", "40", "--stall-seconds", "15"),
    )
    assert FIELDS <= result.keys()
    assert result["duplicates"] == 0
    assert result["final_state_ok"] is True, result
    assert result["throttled_429"] == 0
    assert result["graph_writes"] >= 18  # six creates, six moves, six deletes
    assert result["bound_ops_per_s"] == round(2 * 10_000 / 600, 1)  # 4/L = 800/s is higher
    assert set(result["phases"]) == {"create", "move", "cancel"}
    assert all(phase["missing"] == 0 for phase in result["phases"].values())
    assert 0 < result["e2e_p50_ms"] <= result["e2e_p99_ms"]
    assert result["cpu_ms_per_write"] > 0


def test_intake_run_prints_the_cpu_per_webhook() -> None:
    result = one_line("intake.py", "--connections", "4", "--seconds", "1", "--rounds", "1")
    assert result["accepted"] > 0
    assert result["stored_ok"] is True, result
    assert result["errors"] == []
    assert result["cpu_ms_per_webhook"] > 0
    assert result["cpu_ms_per_healthz"] > 0
