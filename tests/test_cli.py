"""The `calbridge` command, run as a real process (cases that differ only in their settings run
in this one): migrate, token, serve, worker."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import sqlite3
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import closing
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from tests.conftest import POSTGRES_SKIP_REASON, POSTGRES_URL
from tests.helpers import invoke_cli

CALBRIDGE = [sys.executable, "-m", "app.cli"]


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALBRIDGE_")}
    env["CALBRIDGE_DATABASE_URL"] = f"sqlite:///{tmp_path / 'calbridge.db'}"
    env.update(extra)
    return env


def _run(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*CALBRIDGE, *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=60
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_migrate_creates_the_schema(tmp_path: Path) -> None:
    result = _run(["migrate"], _env(tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    assert "schema at" in result.stdout
    with closing(sqlite3.connect(tmp_path / "calbridge.db")) as conn:
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert {"connection", "employee", "job", "inbox_event", "alembic_version"} <= tables


def test_token_create_prints_once_and_stores_only_the_hash(tmp_path: Path) -> None:
    result = _run(["token", "create", "--name", "ops"], _env(tmp_path), tmp_path)
    assert result.returncode == 0, result.stderr
    token = result.stdout.strip()
    assert token.startswith("cbt_") and len(token) > 40
    with closing(sqlite3.connect(tmp_path / "calbridge.db")) as conn:
        rows = conn.execute("SELECT name, token_hash, role FROM admin_token").fetchall()
    assert rows == [("ops", hashlib.sha256(token.encode()).hexdigest(), "admin")]


def test_postgres_without_secret_key_refuses_to_start(tmp_path: Path) -> None:
    env = _env(tmp_path, CALBRIDGE_DATABASE_URL="postgresql://postgres@127.0.0.1:1/none")
    result = _run(["serve", "--port", str(_free_port())], env, tmp_path)
    assert result.returncode == 2
    assert "CALBRIDGE_SECRET_KEY is required with PostgreSQL" in result.stderr


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """`calbridge serve` on SQLite as a real process; yields its base URL and environment."""
    port = _free_port()
    env = _env(tmp_path, CALBRIDGE_ADMIN_TOKEN="e2e-admin-token")
    process = subprocess.Popen(
        [*CALBRIDGE, "serve", "--port", str(port)],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                output = process.stdout.read() if process.stdout else ""
                pytest.fail(f"calbridge serve did not become ready:\n{output}")
            time.sleep(0.1)
        yield base, env
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            # uvicorn shuts down gracefully, then re-raises the SIGTERM it caught (exit 143).
            assert process.wait(timeout=30) in (0, -signal.SIGTERM)
            output = process.stdout.read() if process.stdout else ""
            assert "Finished server process" in output, output
        finally:
            if process.poll() is None:
                process.kill()
            if process.stdout:
                process.stdout.close()


def test_serve_end_to_end(served: tuple[str, dict[str, str]], tmp_path: Path) -> None:
    base, _ = served
    admin = {"Authorization": "Bearer e2e-admin-token"}
    assert (tmp_path / "calbridge.db.key").exists(), "development key generated beside the db"

    org = "f6" + "E2E" * 10
    created = httpx.put(
        f"{base}/api/v1/connections/{org}",
        headers=admin,
        json={
            "tenant": "https://login.microsoftonline.com/contoso.onmicrosoft.com/",
            "client_id": "11111111-2222-3333-4444-555555555555",
            "client_secret": "very-secret-value",
        },
    )
    assert created.status_code == 201, created.text
    webhook_secret = created.json()["webhook_secret"]
    employee = httpx.put(
        f"{base}/api/v1/connections/{org}/employees/brE2E",
        headers=admin,
        json={"mailbox": "max@contoso.com"},
    )
    assert employee.status_code == 201, employee.text

    body = json.dumps(
        {
            "type": "appointment.created",
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {
                "organizationId": org,
                "appointment": {
                    "id": "edE2E",
                    "start": "2026-12-01T10:00:00+01:00",
                    "end": "2026-12-01T11:00:00+01:00",
                    "timeZone": "Europe/Berlin",
                    "bookingResourceList": [{"id": "brE2E", "type": "EMPLOYEE"}],
                },
            },
        }
    )
    now = datetime.now(UTC)
    signature = Webhook(webhook_secret).sign("msg_e2e_1", now, body)
    headers = {
        "content-type": "application/json",
        "webhook-id": "msg_e2e_1",
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }
    accepted = httpx.post(f"{base}/webhooks/bookingtime/{org}", content=body, headers=headers)
    assert accepted.status_code == 202, accepted.text

    jobs = httpx.get(f"{base}/api/v1/jobs", headers=admin, params={"kind": "sync.appointment"})
    assert jobs.status_code == 200
    [job] = jobs.json()["items"]
    assert job["kind"] == "sync.appointment"
    assert job["args"]["appointment_id"] == "edE2E"
    assert isinstance(job["args"]["connection_id"], int)
    # The connection points at the real Microsoft endpoints (unreachable here): the job retries.
    assert job["state"] in ("pending", "running")

    with closing(sqlite3.connect(tmp_path / "calbridge.db")) as conn:
        dump = "\n".join(conn.iterdump())
    assert "very-secret-value" not in dump and webhook_secret not in dump


def test_worker_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert _run(["migrate"], env, tmp_path).returncode == 0
    process = subprocess.Popen(
        [*CALBRIDGE, "worker"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    lines: list[str] = []
    try:
        assert process.stderr is not None
        for line in process.stderr:  # until the worker says it runs (or the process ends)
            lines.append(line)
            if "worker started" in line:
                break
        assert process.poll() is None, "worker exited on its own:\n" + "".join(lines)
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        stderr = "".join(lines) + (process.stderr.read() if process.stderr else "")
        if process.stderr:
            process.stderr.close()
    assert "worker stopped" in stderr


def test_worker_stops_cleanly_on_sigterm_during_start_up(tmp_path: Path) -> None:
    env = _env(tmp_path)
    assert _run(["migrate"], env, tmp_path).returncode == 0
    process = subprocess.Popen(
        [*CALBRIDGE, "worker"], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        # The first log line comes before the worker is built: stop it right there.
        process.stderr.readline()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0
    finally:
        if process.poll() is None:
            process.kill()
        if process.stderr:
            process.stderr.close()


def test_worker_refuses_an_unmigrated_database(tmp_path: Path) -> None:
    result = _run(["worker"], _env(tmp_path), tmp_path)
    assert result.returncode == 2
    assert "run `calbridge migrate` first" in result.stderr


@pytest.mark.postgres
def test_migrate_on_postgres(tmp_path: Path) -> None:
    if POSTGRES_URL is None:
        pytest.skip(POSTGRES_SKIP_REASON)
    from sqlalchemy import create_engine, text

    from app.db import sync_url
    from tests.conftest import _postgres_schema_url

    schema = f"cli_{os.getpid()}_{int(time.time() * 1000) % 100000}"
    admin = create_engine(sync_url(POSTGRES_URL))
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        env = _env(tmp_path, CALBRIDGE_DATABASE_URL=_postgres_schema_url(POSTGRES_URL, schema))
        result = _run(["migrate"], env, tmp_path)
        assert result.returncode == 0, result.stderr
        with admin.connect() as conn:
            tables = set(
                conn.scalars(
                    text("SELECT table_name FROM information_schema.tables WHERE table_schema=:s"),
                    {"s": schema},
                )
            )
        assert {"job", "connection", "alembic_version"} <= tables
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def test_the_worker_runs_on_uvloop_where_it_is_installed() -> None:
    """`calbridge worker` runs its loop like `serve` does: on uvloop, when it is there."""
    import asyncio

    pytest.importorskip("uvloop", reason="uvloop is not built for this platform")
    from app.cli import _run_fast

    loops: list[str] = []

    async def note_the_loop() -> None:
        loops.append(type(asyncio.get_running_loop()).__module__)

    _run_fast(note_the_loop())
    assert len(loops) == 1 and loops[0].startswith("uvloop"), loops


# Class 1 of issue 18: every misconfiguration is one line on stderr naming the variable and its
# fix, before anything is touched: no traceback, no database file, no key file, no log lines.
def _not_pem(tmp_path: Path) -> str:
    path = tmp_path / "not-a-ca.pem"
    path.write_text("hello\n")
    return str(path)


MISCONFIGURATIONS = {
    "ca-bundle-missing": ("CALBRIDGE_CA_BUNDLE", lambda p: str(p / "missing.pem"), "missing.pem"),
    "ca-bundle-directory": ("CALBRIDGE_CA_BUNDLE", lambda p: str(p), "is a directory"),
    "ca-bundle-not-pem": ("CALBRIDGE_CA_BUNDLE", _not_pem, "not-a-ca.pem"),
    "database-url-unparseable": ("CALBRIDGE_DATABASE_URL", lambda p: "::nonsense", "sqlite:///"),
    "database-url-mysql": ("CALBRIDGE_DATABASE_URL", lambda p: "mysql://u@db/x", "postgresql://"),
    "public-url-http": ("CALBRIDGE_PUBLIC_URL", lambda p: "http://example.com", "https"),
    "public-url-garbage": ("CALBRIDGE_PUBLIC_URL", lambda p: "calbridge", "URL"),
    "graph-url": ("CALBRIDGE_GRAPH_URL", lambda p: "graph", "https URL"),
    "authority-host": ("CALBRIDGE_AUTHORITY_HOST", lambda p: "https://x:99999", "https URL"),
    "worker-concurrency": ("CALBRIDGE_WORKER__CONCURRENCY", lambda p: "0", "greater than"),
    "worker-lease": ("CALBRIDGE_WORKER__LEASE_SECONDS", lambda p: "abc", "number"),
    "worker-group": ("CALBRIDGE_WORKER", lambda p: "8", "CALBRIDGE_WORKER__"),
    "outlook-horizon": ("CALBRIDGE_OUTLOOK__HORIZON_DAYS", lambda p: "99999", "less than"),
    "retention": ("CALBRIDGE_RETENTION__INBOX_DAYS", lambda p: "-1", "greater than"),
    "log-level": ("CALBRIDGE_LOG_LEVEL", lambda p: "verbose", "DEBUG, INFO"),
    "log-format": ("CALBRIDGE_LOG_FORMAT", lambda p: "xml", "json"),
    "webhook-tolerance": ("CALBRIDGE_WEBHOOK_TOLERANCE_SECONDS", lambda p: "0", "greater than"),
    "max-webhook-bytes": ("CALBRIDGE_MAX_WEBHOOK_BYTES", lambda p: "many", "integer"),
    "metrics-public": ("CALBRIDGE_METRICS_PUBLIC", lambda p: "perhaps", "boolean"),
    "secret-key": ("CALBRIDGE_SECRET_KEY", lambda p: "not-a-fernet-key", "Fernet"),
    "trusted-proxies": ("CALBRIDGE_TRUSTED_PROXIES", lambda p: "10.0.0.0/8,proxy", "CIDR"),
}


def _one_line(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("calbridge: ")
    return lines[0]


@pytest.mark.parametrize("case", sorted(MISCONFIGURATIONS))
def test_a_misconfiguration_is_one_line_before_anything_is_touched(
    case: str, tmp_path: Path
) -> None:
    variable, make_value, fix = MISCONFIGURATIONS[case]
    env = _env(tmp_path, **{variable: make_value(tmp_path)})
    # One case as a real process; the rest take the same path in this one.
    run = _run if case == "secret-key" else invoke_cli
    with socket.socket() as busy:  # should the check let it through, serve stops here
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        result = run(["serve", "--port", str(busy.getsockname()[1])], env, tmp_path)
    line = _one_line(result)
    assert variable in line and fix in line, line
    assert "not-a-fernet-key" not in line  # a secret is never echoed
    assert not (tmp_path / "calbridge.db").exists(), "nothing migrated before the check"
    assert not (tmp_path / "calbridge.db.key").exists()


@pytest.mark.parametrize(
    "command", [["worker"], ["migrate"], ["token", "create", "--name", "x"], ["token", "list"]]
)
def test_every_command_checks_the_settings_first(command: list[str], tmp_path: Path) -> None:
    env = _env(tmp_path, CALBRIDGE_LOG_LEVEL="loud")
    # `worker` takes the signals over before anything else: a real process, not this one.
    run = _run if command == ["worker"] else invoke_cli
    line = _one_line(run(command, env, tmp_path))
    assert "CALBRIDGE_LOG_LEVEL" in line
    assert not (tmp_path / "calbridge.db").exists()


def test_an_unreachable_database_is_one_line(tmp_path: Path) -> None:
    env = _env(tmp_path, CALBRIDGE_DATABASE_URL=f"sqlite:///{tmp_path}/no/such/dir/x.db")
    result = _run(["migrate"], env, tmp_path)
    line = _one_line(
        subprocess.CompletedProcess(
            result.args,
            result.returncode,
            result.stdout,
            # Alembic's start-up log lines may come first; the failure itself is one line.
            "\n".join(x for x in result.stderr.splitlines() if x.startswith("calbridge:")),
        )
    )
    assert "Traceback" not in result.stderr
    assert "CALBRIDGE_DATABASE_URL" in line and "unable to open database file" in line


def test_a_busy_port_is_one_line_before_the_schema_is_touched(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(["serve", "--port", str(port)], _env(tmp_path), tmp_path)
    line = _one_line(result)
    assert f"127.0.0.1:{port}" in line and "--port" in line
    assert not (tmp_path / "calbridge.db").exists()


def test_the_sandbox_on_a_busy_port_is_one_line_and_leaves_no_temp_dir(tmp_path: Path) -> None:
    temp = tmp_path / "tmp"
    temp.mkdir()
    env = {**os.environ, "TMPDIR": str(temp)}
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(["sandbox", "--port", str(port)], env, tmp_path)
    assert f"127.0.0.1:{port}" in _one_line(result)
    assert list(temp.iterdir()) == []


def test_the_sandbox_refuses_a_non_loopback_host(tmp_path: Path) -> None:
    result = _run(["sandbox", "--host", "0.0.0.0", "--port", "0"], dict(os.environ), tmp_path)
    line = _one_line(result)
    assert "0.0.0.0" in line and "--allow-remote" in line and "unauthenticated" in line


def test_the_sandbox_listens_off_loopback_only_when_allowed_with_a_warning(
    tmp_path: Path,
) -> None:
    port = _free_port()
    command = [*CALBRIDGE, "sandbox", "--host", "0.0.0.0", "--allow-remote", "--port", str(port)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    ) as process:
        assert process.stdout is not None
        first = process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=20)
    assert f"running at https://0.0.0.0:{port}" in first
    assert "warning" in errors and "unauthenticated" in errors
    assert "Traceback" not in errors


def test_the_sandbox_prints_absolute_paths(tmp_path: Path) -> None:
    command = [*CALBRIDGE, "sandbox", "--port", str(_free_port()), "--state-dir", "state"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    ) as process:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(7)]
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=20)
    ca = tmp_path / "state" / "sandbox-ca.pem"
    assert f"CA certificate: {ca}\n" in lines
    assert f"  export CALBRIDGE_CA_BUNDLE={ca}\n" in lines


def test_the_sandbox_prints_bookingtime_values_that_work(tmp_path: Path) -> None:
    command = [*CALBRIDGE, "sandbox", "--port", str(_free_port()), "--state-dir", "state"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path
    ) as process:
        try:
            assert process.stdout is not None
            lines: list[str] = []
            while not lines or not lines[-1].startswith("Ctrl-C"):
                line = process.stdout.readline()
                assert line, f"the sandbox stopped before it was ready: {lines}"
                lines.append(line.strip())
            values = dict(line.split(":", 1) for line in lines if line.startswith("bookingtime "))
            exports = dict(
                line.removeprefix("export ").split("=", 1)
                for line in lines
                if "BOOKINGTIME" in line
            )
            trust = ssl.create_default_context(cafile=str(tmp_path / "state" / "sandbox-ca.pem"))
            token = httpx.post(
                exports["CALBRIDGE_BOOKINGTIME__AUTH_URL"],
                data={
                    "grant_type": "client_credentials",
                    "client_id": values["bookingtime client id"].strip(),
                    "client_secret": values["bookingtime client secret"].strip(),
                },
                verify=trust,
            )
        finally:
            process.send_signal(signal.SIGTERM)
            process.communicate(timeout=20)
    assert token.status_code == 200 and token.json()["refresh_token"]
    assert exports["CALBRIDGE_BOOKINGTIME__API_URL"] == values["bookingtime API URL"].strip()
    assert values["bookingtime organization"].strip().startswith("f6")


def test_an_unreachable_database_stops_the_worker_with_one_line(tmp_path: Path) -> None:
    env = _env(
        tmp_path,
        CALBRIDGE_DATABASE_URL="postgresql://postgres@127.0.0.1:1/none",
        CALBRIDGE_SECRET_KEY="pZ9xJ3vR1Zx7Jq4Kc2mWb8nYf0tHs6uLa5dGe3iOk1Q=",
        CALBRIDGE_LOG_LEVEL="WARNING",
    )
    line = _one_line(_run(["worker"], env, tmp_path))
    assert "cannot reach the database" in line and "CALBRIDGE_DATABASE_URL" in line
