"""Shared fixtures: a real, migrated database per test (SQLite always, PostgreSQL when reachable),
settings, the app and an HTTP client driving it in-process.

PostgreSQL tests get their own schema (dropped afterwards), so runs can share one server.
Set CALBRIDGE_TEST_POSTGRES_URL to choose the server; the default is tried and, when it does not
answer, the PostgreSQL variants skip with the reason.
"""

from __future__ import annotations

import functools
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
    """A fresh database at the schema head, on each engine."""
    with _empty_database(request.param, tmp_path) as url:
        if request.param == "sqlite":
            shutil.copy(sqlite_template, tmp_path / "calbridge.db")
        else:
            create_schema(url)
        yield url


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
