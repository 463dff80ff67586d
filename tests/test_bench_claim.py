"""bench/claim.py at a tiny size, on SQLite and (when reachable) PostgreSQL: one JSON line with a
figure per backlog; the run itself asserts that no job of the full mailbox is ever claimed."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import POSTGRES_SKIP_REASON, POSTGRES_URL

BENCH = Path(__file__).resolve().parent.parent / "bench" / "claim.py"


def _run(*extra: str) -> dict[str, object]:
    completed = subprocess.run(
        [sys.executable, str(BENCH), "--backlogs", "10,50", "--claims", "3", *extra],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    lines = completed.stdout.strip().splitlines()
    assert len(lines) == 1, completed.stdout
    result: dict[str, object] = json.loads(lines[0])
    return result


def test_sqlite_run_prints_a_claim_time_per_backlog() -> None:
    result = _run()
    assert result["database"] == "sqlite"
    claim_ms = result["claim_ms"]
    assert isinstance(claim_ms, dict) and set(claim_ms) == {"10", "50"}
    assert all(isinstance(ms, float | int) and ms > 0 for ms in claim_ms.values())


@pytest.mark.postgres
def test_postgres_run_prints_a_claim_time_per_backlog() -> None:
    if POSTGRES_URL is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    result = _run("--postgres-url", POSTGRES_URL)
    assert result["database"] == "postgres"
    claim_ms = result["claim_ms"]
    assert isinstance(claim_ms, dict) and set(claim_ms) == {"10", "50"}
