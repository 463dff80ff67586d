"""Schema migrations: Alembic driven from code, so `calbridge migrate` works from any directory."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

import migrations

MIGRATIONS_DIR = Path(migrations.__file__).parent


def alembic_config(database_url: str) -> Config:
    """An Alembic config for `database_url`, independent of the working directory."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.set_main_option("path_separator", "os")
    config.attributes["database_url"] = database_url
    return config


def upgrade(database_url: str, revision: str = "head") -> None:
    """Bring the schema to `revision` (blocking; run it before serving traffic)."""
    command.upgrade(alembic_config(database_url), revision)


def downgrade(database_url: str, revision: str) -> None:
    command.downgrade(alembic_config(database_url), revision)


def head_revision() -> str | None:
    """The newest revision the code knows."""
    script = ScriptDirectory(str(MIGRATIONS_DIR))
    return script.get_current_head()


async def current_revision(connection: AsyncConnection) -> str | None:
    """The revision the database is at, or None when it has no schema yet."""

    def _read(sync_conn: object) -> str | None:
        from alembic.runtime.migration import MigrationContext

        context = MigrationContext.configure(sync_conn)  # type: ignore[arg-type]
        return context.get_current_revision()

    return await connection.run_sync(_read)


async def ping(connection: AsyncConnection) -> None:
    await connection.execute(text("SELECT 1"))
