"""bench/claim.py at a tiny size, on SQLite and (when reachable) PostgreSQL: one JSON line with a
figure per backlog; the run itself asserts that no job of the full mailbox is ever claimed."""

from __future__ import annotations

import pytest

from tests.benchrun import one_line
from tests.conftest import POSTGRES_SKIP_REASON, POSTGRES_URL


def _run(*extra: str) -> dict[str, object]:
    return one_line("claim.py", "--backlogs", "10,50", "--claims", "3", *extra)


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
