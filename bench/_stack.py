"""The processes a benchmark runs against: the Graph/Entra sandbox (`calbridge sandbox`),
`calbridge serve` and `calbridge worker` processes, and a throwaway PostgreSQL database.

Every process is a real subprocess of this one, writes its output to a log file in the work
directory, and is stopped with a signal by its own pid."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx

REPO = Path(__file__).resolve().parent.parent
STOP_TIMEOUT = 30.0

# The process under cProfile, dumped when it exits (SIGINT for uvicorn: it re-raises the signal
# it stopped on, and a re-raised SIGTERM would end the process before the dump).
_PROFILED = """
import cProfile, sys
from app.cli import main
path = sys.argv.pop(1)
profile = cProfile.Profile()
profile.enable()
try:
    main()
except (SystemExit, KeyboardInterrupt):
    pass
finally:
    profile.disable()
    profile.dump_stats(path)
"""


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time a live process has used so far (Linux /proc), else None."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    # After the command name: state is field 3, utime and stime are fields 14 and 15.
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    profiled: bool

    def log_text(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    def cpu_seconds(self) -> float | None:
        return cpu_seconds(self.popen.pid) if self.alive() else None

    def alive(self) -> bool:
        return self.popen.poll() is None

    def stop(self) -> None:
        if not self.alive():
            return
        self.popen.send_signal(signal.SIGINT if self.profiled else signal.SIGTERM)
        try:
            self.popen.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            self.popen.wait(timeout=STOP_TIMEOUT)


async def wait_until_healthy(
    base_url: str, process: subprocess.Popen[bytes], within: float = 20.0
) -> None:
    """Return once `GET /healthz` answers 200; exit if the server died or never answered."""
    deadline = time.monotonic() + within
    async with httpx.AsyncClient(base_url=base_url) as client:
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise SystemExit(f"the server exited with {process.returncode}")
            try:
                if (await client.get("/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.05)
    raise SystemExit(f"the server did not answer /healthz within {within:.0f} s")


def start_process(
    name: str,
    args: list[str],
    *,
    workdir: Path,
    env: dict[str, str],
    profile_dir: Path | None = None,
) -> Process:
    """`python -m app.cli <args>` (under cProfile into `profile_dir/<name>.prof` if given)."""
    if profile_dir is not None:
        command = [sys.executable, "-c", _PROFILED, str(profile_dir / f"{name}.prof"), *args]
    else:
        command = [sys.executable, "-m", "app.cli", *args]
    log_path = workdir / f"{name}.log"
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            command, cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    return Process(name, popen, log_path, profile_dir is not None)


def wait_for_log(process: Process, pattern: str, timeout: float) -> re.Match[str]:
    """Block until the process's log matches `pattern` (multiline); fail if it exits first."""
    compiled = re.compile(pattern, re.MULTILINE)
    deadline = time.monotonic() + timeout
    while True:
        match = compiled.search(process.log_text())
        if match is not None:
            return match
        if not process.alive():
            raise RuntimeError(f"{process.name} exited early:\n{process.tail()}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{process.name} did not log {pattern!r}:\n{process.tail()}")
        time.sleep(0.05)


def base_env(code: Path = REPO) -> dict[str, str]:
    """This environment without any CALBRIDGE_* setting of the caller's shell, running the
    calbridge source tree `code` (first on the path, before the venv's editable install)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CALBRIDGE_")}
    env["PYTHONPATH"] = str(code)
    return env


@dataclass(frozen=True)
class SandboxInfo:
    url: str
    ca_path: Path
    tenant_id: str
    client_id: str
    client_secret: str


def start_sandbox(workdir: Path, env: dict[str, str]) -> tuple[Process, SandboxInfo]:
    port = free_port()
    state_dir = workdir / "sandbox"
    process = start_process(
        "sandbox",
        ["sandbox", "--port", str(port), "--state-dir", str(state_dir)],
        workdir=workdir,
        env=env,
    )
    banner = wait_for_log(
        process,
        r"tenant id:\s+(\S+).*\n\s*client id:\s+(\S+)\s*\n\s*client secret:\s+(\S+)",
        timeout=30,
    )
    info = SandboxInfo(
        url=f"https://127.0.0.1:{port}",
        ca_path=state_dir / "sandbox-ca.pem",
        tenant_id=banner.group(1),
        client_id=banner.group(2),
        client_secret=banner.group(3),
    )
    return process, info


def postgres_backend_cpu(admin_url: str, database: str) -> dict[int, float]:
    """CPU seconds of every server process serving `database`, by pid (empty when the server
    is not on this host)."""
    import psycopg
    from sqlalchemy.engine import make_url

    conninfo = make_url(admin_url).set(drivername="postgresql")
    with psycopg.connect(conninfo.render_as_string(hide_password=False)) as connection:
        rows = connection.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = %s", (database,)
        ).fetchall()
    used = {pid: cpu_seconds(pid) for (pid,) in rows}
    return {pid: seconds for pid, seconds in used.items() if seconds is not None}


@contextlib.contextmanager
def postgres_database(admin_url: str, prefix: str = "calbridge_e2e") -> Iterator[str]:
    """A fresh database on the server of `admin_url` (a SQLAlchemy URL), named `prefix` and a
    random suffix, dropped afterwards; yields its SQLAlchemy URL."""
    import psycopg
    from psycopg import sql
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    conninfo = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(conninfo, autocommit=True) as connection:
        connection.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield admin.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(conninfo, autocommit=True) as connection:
            drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)")
            connection.execute(drop.format(sql.Identifier(name)))
