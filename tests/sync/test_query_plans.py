"""The sync job's reads seek their rows by appointment: their cost must not grow with the
connection's history (SQLite chose a connection-wide index scan while one existed)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text
from sqlalchemy.dialects import sqlite

from app.db import Database
from app.sync.repository import (
    SELECT_EMPLOYEES,
    SELECT_MAPPINGS,
    SELECT_SNAPSHOT,
    SELECT_UNMAPPED_RECORDED,
)

KEYS = {"connection_id": 1, "appointment_id": "ed1"}


async def _plan(database: Database, statement: Any) -> str:
    """SQLite's plan of `statement` (its values as literals: the plan is the same)."""
    compiled = statement.compile(
        dialect=sqlite.dialect(),
        compile_kwargs={"literal_binds": True, "render_postcompile": True},
    )
    async with database.session_scope() as session:
        rows = await session.execute(text(f"EXPLAIN QUERY PLAN {compiled}"))
        return "\n".join(str(row[-1]) for row in rows)


@pytest.mark.parametrize(
    ("statement", "seek"),
    [
        (SELECT_MAPPINGS.params(KEYS), "(connection_id=? AND appointment_id=?)"),
        (SELECT_SNAPSHOT.params(KEYS), "(connection_id=? AND appointment_id=?)"),
        (SELECT_UNMAPPED_RECORDED.params(KEYS), "(connection_id=? AND appointment_id=?)"),
    ],
    ids=["mappings", "snapshot", "unmapped_recorded"],
)
async def test_reads_of_one_appointment_seek_it(
    database: Database, statement: Any, seek: str
) -> None:
    if not database.is_sqlite:
        pytest.skip("SQLite's plan only: PostgreSQL plans by its table statistics")
    plan = await _plan(database, statement)
    assert seek in plan, plan


async def test_employees_are_read_by_key(database: Database) -> None:
    if not database.is_sqlite:
        pytest.skip("SQLite's plan only: PostgreSQL plans by its table statistics")
    plan = await _plan(
        database, SELECT_EMPLOYEES.params(connection_id=1, booking_resource_ids=["a", "b"])
    )
    assert "(connection_id=? AND booking_resource_id=?)" in plan, plan
