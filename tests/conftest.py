"""Shared fixtures: a real, migrated database per test (SQLite always, PostgreSQL when reachable),
settings, the app and an HTTP client driving it in-process.

PostgreSQL tests get a schema of their own under a name of their own: built once per process,
emptied and renamed between tests, dropped at the end, so runs can share one server.
Set CALBRIDGE_TEST_POSTGRES_URL to choose the server; the default is tried and, when it does not
answer, the PostgreSQL variants skip with the reason.
"""

from __future__ import annotations

import functools
import itertools
import os
import shutil
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from cryptography.fernet import Fernet
from fastapi import FastAPI
from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError

from app.config import Settings
from app.crypto import SecretBox
from app.db import Database, sync_url
from app.main import create_app
from app.migrate import head_revision
from app.models import Base, Connection

if TYPE_CHECKING:
    from app.sandbox import SandboxServer
    from tests.world import MakeWorld

DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
ADMIN_TOKEN = "test-bootstrap-admin-token"
SECRET_KEY = Fernet.generate_key().decode()


def _postgres_url() -> tuple[str | None, str]:
    """The PostgreSQL URL for tests and, when there is none, why."""
    url = os.environ.get("CALBRIDGE_TEST_POSTGRES_URL", DEFAULT_POSTGRES_URL)
    if not url:
        return None, "CALBRIDGE_TEST_POSTGRES_URL is empty"
    parsed = make_url(url)
    host, port = parsed.host or "127.0.0.1", parsed.port or 5432
    try:
        with socket.create_connection((host, port), timeout=1):
            pass
    except OSError as exc:
        reason = exc.strerror or str(exc)
        return None, f"no PostgreSQL at {host}:{port} ({reason}); set CALBRIDGE_TEST_POSTGRES_URL"
    return url, ""


POSTGRES_URL, POSTGRES_SKIP_REASON = _postgres_url()


def create_schema(url: str) -> None:
    """The models' schema, stamped at the migration head (tests/test_migrations.py proves the
    migrations build exactly this schema)."""
    engine = create_engine(sync_url(url))
    try:
        with engine.begin() as conn:
            Base.metadata.create_all(conn)
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) PRIMARY KEY)"))
            conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": head_revision()})
    finally:
        engine.dispose()


@pytest.fixture(scope="session")
def sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A SQLite database with the schema, made once; each test gets a copy."""
    path = tmp_path_factory.mktemp("template") / "template.db"
    create_schema(f"sqlite:///{path}")
    return path


def _postgres_schema_url(base: str, schema: str) -> str:
    url = make_url(base).set(drivername="postgresql+psycopg")
    query = dict(url.query)
    query["options"] = f"-csearch_path={schema}"
    return url.set(query=query).render_as_string(hide_password=False)


class SchemaPool:
    """Schemas at the migration head for one test process, each lent to one test at a time.

    Emptying a schema (one TRUNCATE) costs a fraction of building one, so a schema goes back to
    the pool after its test, renamed: a connection that outlives its test finds nothing under
    the old name instead of the next test's rows. A schema whose structure changed, or that
    cannot be emptied, is dropped instead. Names are unique per run and process, so a crashed
    run's leftovers never meet this one's."""

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.admin = create_engine(sync_url(server_url))
        self.free: list[str] = []
        self.live: set[str] = set()
        self.fingerprint: str | None = None
        self.tables = [t.name for t in Base.metadata.sorted_tables]
        run = uuid.uuid4().hex[:10]
        self._names = (f"t_{run}_{n}" for n in itertools.count())

    def acquire(self) -> str:
        if self.free:
            return self.free.pop()
        schema = next(self._names)
        with self.admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        self.live.add(schema)
        create_schema(_postgres_schema_url(self.server_url, schema))
        if self.fingerprint is None:
            with self.admin.connect() as conn:
                self.fingerprint = _schema_fingerprint(conn, schema)
        return schema

    def release(self, schema: str) -> None:
        renamed = next(self._names)
        tables = ", ".join(f'"{renamed}"."{name}"' for name in self.tables)
        try:
            with self.admin.begin() as conn:
                # A connection the test left in a transaction must not hang the suite.
                conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                conn.execute(text(f'ALTER SCHEMA "{schema}" RENAME TO "{renamed}"'))
                conn.execute(text(f"TRUNCATE {tables} RESTART IDENTITY CASCADE"))
                intact = _schema_fingerprint(conn, renamed) == self.fingerprint
        except DBAPIError:
            self._drop(schema)
            return
        self.live.discard(schema)
        self.live.add(renamed)
        if intact:
            self.free.append(renamed)
        else:
            self._drop(renamed)

    def close(self) -> None:
        for schema in list(self.live):
            self._drop(schema)
        self.admin.dispose()

    def _drop(self, schema: str) -> None:
        try:
            with self.admin.begin() as conn:
                conn.execute(text("SET LOCAL lock_timeout = '5s'"))
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        except DBAPIError:
            return  # still locked by a stray connection: left behind under a name no run reuses
        self.live.discard(schema)


# Everything a test could change in a schema but rows, whatever the schema's name: columns,
# defaults, indexes, constraints, triggers, functions, relations and the migration stamp.
_FINGERPRINT = """
SELECT md5(replace(string_agg(part, ' | ' ORDER BY part), :schema || '.', '')) FROM (
  SELECT c.relname || '.' || a.attname || ' ' || format_type(a.atttypid, a.atttypmod)
         || ' ' || a.attnotnull || ' ' || coalesce(pg_get_expr(d.adbin, d.adrelid), '') AS part
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
   WHERE c.relnamespace = CAST(:schema AS regnamespace) AND a.attnum > 0 AND NOT a.attisdropped
  UNION ALL SELECT c.relname || ' ' || CAST(c.relkind AS text) FROM pg_class c
   WHERE c.relnamespace = CAST(:schema AS regnamespace)
  UNION ALL SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i
    JOIN pg_class c ON c.oid = i.indrelid WHERE c.relnamespace = CAST(:schema AS regnamespace)
  UNION ALL SELECT conname || ' ' || pg_get_constraintdef(oid) FROM pg_constraint
   WHERE connamespace = CAST(:schema AS regnamespace)
  UNION ALL SELECT pg_get_triggerdef(t.oid) FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
   WHERE c.relnamespace = CAST(:schema AS regnamespace) AND NOT t.tgisinternal
  UNION ALL SELECT p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ') '
         || md5(p.prosrc) FROM pg_proc p WHERE p.pronamespace = CAST(:schema AS regnamespace)
) AS parts
"""


def _schema_fingerprint(conn: Any, schema: str) -> str:
    digest = conn.execute(text(_FINGERPRINT), {"schema": schema}).scalar_one()
    version = conn.execute(text(f'SELECT version_num FROM "{schema}".alembic_version')).all()
    return f"{digest} {version}"


@pytest.fixture(scope="session")
def postgres_schemas() -> Iterator[SchemaPool]:
    """This test process's pool of PostgreSQL schemas at the head (skips without a server)."""
    if POSTGRES_URL is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    pool = SchemaPool(POSTGRES_URL)
    try:
        yield pool
    finally:
        pool.close()


@contextmanager
def _empty_database(kind: str, tmp_path: Path) -> Iterator[str]:
    """An empty database URL: a new SQLite file, or a new PostgreSQL schema dropped afterwards."""
    if kind == "sqlite":
        yield f"sqlite:///{tmp_path / 'calbridge.db'}"
        return
    if POSTGRES_URL is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(sync_url(POSTGRES_URL))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield _postgres_schema_url(POSTGRES_URL, schema)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=ENGINES)
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema), on each engine."""
    with _empty_database(request.param, tmp_path) as url:
        yield url


@pytest.fixture(params=ENGINES)
def db_url(request: pytest.FixtureRequest, tmp_path: Path, sqlite_template: Path) -> Iterator[str]:
    """A database at the schema head with no rows, this test's alone, on each engine."""
    if request.param == "sqlite":
        shutil.copy(sqlite_template, tmp_path / "calbridge.db")
        yield f"sqlite:///{tmp_path / 'calbridge.db'}"
        return
    pool: SchemaPool = request.getfixturevalue("postgres_schemas")
    schema = pool.acquire()
    try:
        yield _postgres_schema_url(pool.server_url, schema)
    finally:
        pool.release(schema)


@pytest.fixture
def settings(db_url: str) -> Settings:
    return Settings(
        database_url=db_url,
        secret_key=SECRET_KEY,
        admin_token=ADMIN_TOKEN,
        _env_file=None,  # type: ignore[call-arg]
    )


@pytest.fixture
def secret_box() -> SecretBox:
    return SecretBox([SECRET_KEY.encode()])


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    db = Database(settings.database_url)
    try:
        yield db
    finally:
        await db.dispose()


@pytest.fixture
async def app(
    settings: Settings, database: Database, secret_box: SecretBox
) -> AsyncIterator[FastAPI]:
    application = create_app(settings, database=database, secret_box=secret_box)
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://calbridge.test") as c:
        yield c


@pytest.fixture
def make_world(db_url: str, database: Database, secret_box: SecretBox) -> MakeWorld:
    """`make_world(cls, **options)`: an async context manager yielding a `tests.world.World` (or
    the subclass `cls`) on this test's database; see `tests.world.build_world` for the options."""
    from tests.world import build_world

    return functools.partial(build_world, db_url, database, secret_box)


@pytest.fixture
def admin_headers() -> dict[str, str]:
    return {"Authorization": f"Bearer {ADMIN_TOKEN}"}


__all__ = ["ADMIN_TOKEN", "POSTGRES_SKIP_REASON", "POSTGRES_URL", "SECRET_KEY"]


def bare_connection(organization_id: str) -> Connection:
    """A connection row with placeholder credentials, for tests that only need it to exist (its
    id for foreign keys): nothing here reaches Graph or verifies a webhook."""
    return Connection(
        organization_id=organization_id,
        tenant="contoso.example",
        client_id="00000000-0000-0000-0000-000000000001",
        client_secret_encrypted="x",
        webhook_secret_encrypted="x",
    )


def sandbox_settings(db_url: str, sandbox: SandboxServer, **overrides: Any) -> Settings:
    """Settings of a calbridge on `db_url` that talks to the Graph sandbox over HTTPS (its CA
    trusted), with the test secret key and admin token."""
    return Settings(
        database_url=db_url,
        secret_key=SECRET_KEY,
        admin_token=ADMIN_TOKEN,
        graph_url=sandbox.graph_url,
        authority_host=sandbox.authority_host,
        ca_bundle=sandbox.ca_path,
        _env_file=None,  # type: ignore[call-arg]
        **overrides,
    )
