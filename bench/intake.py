"""Benchmark of the bookingtime webhook intake against `GET /healthz` on the real server.

Starts uvicorn (one process, SQLite file) as a subprocess, sends pre-signed webhooks over N
keep-alive connections for T seconds (distinct appointments plus ~10 % re-deliveries of ids
already answered), then `GET /healthz` the same way, and prints one JSON line of figures. The
two phases alternate in `--rounds` windows (default 5 of T/5 seconds each), so drift in the
machine's speed does not land on one of them.

    .venv/bin/python bench/intake.py --connections 32 --seconds 10 [--client raw|httpx]

The default client is `raw`: pre-built HTTP/1.1 requests written on plain keep-alive sockets,
about 30 µs of client CPU per request, so both phases measure what the server sustains. `httpx`
(one AsyncClient per connection) costs about 0.7 ms of CPU per request: on two cores it caps
`healthz_per_s` near 1,500/s, so its `ratio` compares mostly the client with itself and its
latencies include the client's own queueing. `--profile FILE` runs the server under cProfile.

Besides the rates, the line gives the server's CPU time per request of each phase (all
threads, its main thread, and the system share): on a shared machine the rates swing with other
load, the CPU cost per request much less.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import os
import random
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet
from standardwebhooks import Webhook

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._stack import free_port, wait_until_healthy  # noqa: E402

ORGANIZATION_ID = "f6BenchOrganisation0000000000000"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"calbridge-bench-webhook-secret-1").decode()
WEBHOOK_PATH = f"/webhooks/bookingtime/{ORGANIZATION_ID}"
SAMPLE = REPO / "tests" / "fixtures" / "bookingtime" / "appointment_created.json"
DUPLICATE_SHARE = 0.10


@dataclass
class Delivery:
    body: bytes
    headers: dict[str, str]
    raw: bytes = b""  # the whole HTTP/1.1 request, for the raw client
    request: httpx.Request | None = None  # built before timing, for the httpx client


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    accepted: int = 0  # 202 "accepted": a distinct event stored with its job
    duplicates: int = 0  # 200 "duplicate"
    other: list[str] = field(default_factory=list)


class RawConnection:
    """One keep-alive HTTP/1.1 connection sending pre-built requests (responses carry
    Content-Length: uvicorn sets it on every JSON response)."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int) -> RawConnection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def request(self, raw: bytes) -> tuple[int, bytes]:
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        lowered = head.lower()
        start = lowered.index(b"content-length:") + len(b"content-length:")
        length = int(lowered[start : lowered.index(b"\r\n", start)])
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        self.writer.close()
        await self.writer.wait_closed()


class HttpxConnection:
    """The same over httpx, one client per connection (a shared httpx pool of 32 connections
    collapses to a few hundred requests per second)."""

    def __init__(self, base_url: str) -> None:
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.client = httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0)

    async def send(self, delivery: Delivery, url: str) -> tuple[int, bytes]:
        if delivery.request is None:
            delivery.request = self.client.build_request(
                "POST", url, content=delivery.body, headers=delivery.headers
            )
        response = await self.client.send(delivery.request)
        return response.status_code, response.content

    async def get(self, url: str) -> tuple[int, bytes]:
        response = await self.client.get(url)
        return response.status_code, response.content

    async def close(self) -> None:
        await self.client.aclose()


def _prepare_database(url: str, secret_key: str) -> None:
    """Schema at head and one connection row, written before the server starts."""
    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from app.crypto import SecretBox
    from app.db import sync_url
    from app.migrate import upgrade
    from app.models import Connection

    upgrade(url)
    box = SecretBox([secret_key.encode()])
    engine = create_engine(sync_url(url))
    with Session(engine) as session, session.begin():
        session.add(
            Connection(
                organization_id=ORGANIZATION_ID,
                tenant="contoso.onmicrosoft.com",
                client_id="00000000-0000-0000-0000-0000000000b1",
                client_secret_encrypted=box.encrypt("bench"),
                webhook_secret_encrypted=box.encrypt(WEBHOOK_SECRET),
            )
        )
    engine.dispose()


def _raw_request(method: str, path: str, port: int, headers: dict[str, str], body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"host: 127.0.0.1:{port}"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    if body or method == "POST":
        lines.append(f"content-length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def _presign(count: int, port: int) -> list[Delivery]:
    """`count` distinct signed deliveries (one appointment each), made before timing starts."""
    template = json.loads(SAMPLE.read_text(encoding="utf-8"))
    template["data"]["organizationId"] = ORGANIZATION_ID
    template["data"]["appointment"]["organizationId"] = ORGANIZATION_ID
    webhook = Webhook(WEBHOOK_SECRET)
    now = datetime.now(UTC)
    timestamp = str(int(now.timestamp()))
    deliveries = []
    for index in range(count):
        template["data"]["appointment"]["id"] = f"edBench{index:025d}"
        template["timestamp"] = now.isoformat()
        text = json.dumps(template, ensure_ascii=False)
        webhook_id = f"msg_bench_{index:09d}"
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": webhook.sign(webhook_id, now, text),
        }
        body = text.encode()
        raw = _raw_request("POST", WEBHOOK_PATH, port, headers, body)
        deliveries.append(Delivery(body, headers, raw))
    return deliveries


Connection = RawConnection | HttpxConnection


async def _connect(kind: str, port: int, count: int) -> list[Connection]:
    connections: list[Connection] = []
    for _ in range(count):
        if kind == "raw":
            connections.append(await RawConnection.open("127.0.0.1", port))
        else:
            connections.append(HttpxConnection(f"http://127.0.0.1:{port}"))
    return connections


async def _run_for(
    seconds: float,
    connections: list[Connection],
    request: Callable[[Connection], Awaitable[bool]],
) -> float:
    """Run `request` in one loop per connection until the time is up; the time taken."""
    started = time.perf_counter()
    deadline = started + seconds

    async def loop(connection: Connection) -> None:
        while time.perf_counter() < deadline:
            if not await request(connection):
                return

    await asyncio.gather(*(loop(connection) for connection in connections))
    return time.perf_counter() - started


CpuSample = tuple[tuple[float, float], tuple[float, float]]


class ServerCpu:
    """The server process's CPU seconds (all threads, and its main thread alone) from /proc
    (Linux), so each phase's cost per request can be told apart from what other load on the
    machine does to its rate. Samples are None where /proc is not there."""

    def __init__(self, pid: int) -> None:
        self._process = Path(f"/proc/{pid}/stat")
        self._main = Path(f"/proc/{pid}/task/{pid}/stat")
        self._tick = os.sysconf("SC_CLK_TCK")

    def _seconds(self, path: Path) -> tuple[float, float] | None:
        """User and system CPU seconds."""
        try:
            # utime and stime: fields 14 and 15, counted after the parenthesised command name.
            fields = path.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return int(fields[11]) / self._tick, int(fields[12]) / self._tick

    def sample(self) -> CpuSample | None:
        process, main = self._seconds(self._process), self._seconds(self._main)
        return None if process is None or main is None else (process, main)


_NO_CPU: CpuSample = ((0.0, 0.0), (0.0, 0.0))


def _cpu_add(
    total: CpuSample | None, before: CpuSample | None, after: CpuSample | None
) -> CpuSample | None:
    """`total` plus the CPU spent from `before` to `after` (None once a sample is missing)."""
    if total is None or before is None or after is None:
        return None
    return (
        (
            total[0][0] + after[0][0] - before[0][0],
            total[0][1] + after[0][1] - before[0][1],
        ),
        (
            total[1][0] + after[1][0] - before[1][0],
            total[1][1] + after[1][1] - before[1][1],
        ),
    )


def _cpu_per_request(
    before: CpuSample | None, after: CpuSample | None, requests: int
) -> dict[str, float] | None:
    if before is None or after is None or not requests:
        return None

    def per_request(seconds: float) -> float:
        return round(seconds / requests * 1e6, 1)

    (user0, system0), (main_user0, main_system0) = before
    (user1, system1), (main_user1, main_system1) = after
    return {
        "process_us": per_request(user1 - user0 + system1 - system0),
        "main_thread_us": per_request(main_user1 - main_user0 + main_system1 - main_system0),
        "system_us": per_request(system1 - system0),
    }


async def _bench(
    args: argparse.Namespace, port: int, deliveries: list[Delivery], cpu: ServerCpu
) -> dict[str, Any]:
    tally = Tally()
    answered: list[Delivery] = []  # distinct deliveries already accepted: duplicate candidates
    next_index = 0
    rng = random.Random(12)
    healthz_raw = _raw_request("GET", "/healthz", port, {}, b"")

    async def get_healthz(connection: Connection) -> tuple[int, bytes]:
        if isinstance(connection, RawConnection):
            return await connection.request(healthz_raw)
        return await connection.get("/healthz")

    async def send_webhook(connection: Connection) -> bool:
        nonlocal next_index
        if answered and rng.random() < DUPLICATE_SHARE:
            delivery, fresh = rng.choice(answered), False
        elif next_index < len(deliveries):
            delivery, fresh = deliveries[next_index], True
            next_index += 1
        else:
            return False  # the pre-signed pool is used up; the loop ends early
        started = time.perf_counter()
        if isinstance(connection, RawConnection):
            status, body = await connection.request(delivery.raw)
        else:
            status, body = await connection.send(delivery, WEBHOOK_PATH)
        tally.latencies.append(time.perf_counter() - started)
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if status == 202 and b'"accepted"' in body:
            tally.accepted += 1
            if fresh:
                answered.append(delivery)
        elif status == 200:
            tally.duplicates += 1
        elif len(tally.other) < 5:
            tally.other.append(f"{status} {body[:200]!r}")
        return True

    healthz = 0

    async def count_healthz(connection: Connection) -> bool:
        nonlocal healthz
        status, _ = await get_healthz(connection)
        healthz += status == 200
        return True

    connections = await _connect(args.client, port, args.connections)
    try:
        # Every connection open and warm before the clock starts.
        await asyncio.gather(*(get_healthz(connection) for connection in connections))
        # The phases alternate in rounds (T/R seconds each), so a machine whose speed drifts
        # (other tenants, frequency scaling) weighs on both alike instead of on one phase.
        window = args.seconds / args.rounds
        webhook_seconds = healthz_seconds = 0.0
        cpu_webhooks: CpuSample | None = _NO_CPU
        cpu_healthz: CpuSample | None = _NO_CPU
        for _ in range(args.rounds):
            before = cpu.sample()
            webhook_seconds += await _run_for(window, connections, send_webhook)
            middle = cpu.sample()
            healthz_seconds += await _run_for(window, connections, count_healthz)
            after = cpu.sample()
            cpu_webhooks = _cpu_add(cpu_webhooks, before, middle)
            cpu_healthz = _cpu_add(cpu_healthz, middle, after)
    finally:
        await asyncio.gather(*(connection.close() for connection in connections))

    latencies = sorted(tally.latencies)
    p99_index = max(0, int(len(latencies) * 0.99) - 1)
    accepted_per_s = tally.accepted / webhook_seconds
    healthz_per_s = healthz / healthz_seconds
    return {
        "client": args.client,
        "accepted": tally.accepted,
        "duplicates": tally.duplicates,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": tally.other,
        "pool_exhausted": next_index >= len(deliveries),
        "accepted_per_s": round(accepted_per_s, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[p99_index] * 1000, 2),
        "healthz_per_s": round(healthz_per_s, 1),
        "ratio": round(accepted_per_s / healthz_per_s, 3),
        # Server CPU per request of each phase (webhooks counts duplicates too).
        "server_cpu_per_webhook": _cpu_per_request(_NO_CPU, cpu_webhooks, len(latencies)),
        "server_cpu_per_healthz": _cpu_per_request(_NO_CPU, cpu_healthz, healthz),
    }


def _stored(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as db:
        return {
            table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("inbox_event", "appointment", "job")
        }


# The same server under cProfile; the profile is written when uvicorn exits on SIGINT (uvicorn
# re-raises the signal it stopped on, so SIGTERM would kill the process before the dump).
_PROFILED_SERVER = """
import cProfile, sys
from uvicorn.main import main
path = sys.argv.pop(1)
profile = cProfile.Profile()
profile.enable()
try:
    main(["app.main:create_app", "--factory", *sys.argv[1:]])
except (SystemExit, KeyboardInterrupt):
    pass
finally:
    profile.disable()
    profile.dump_stats(path)
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    parser.add_argument(
        "--rounds", type=int, default=5, help="the phases alternate this many times (T/R each)"
    )
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--profile", type=Path, help="run the server under cProfile, dump here")
    parser.add_argument(
        "--pool", type=int, default=0, help="pre-signed deliveries (default 6000 per second)"
    )
    args = parser.parse_args()

    port = free_port()
    deliveries = _presign(args.pool or int(6000 * args.seconds), port)
    workdir = Path(tempfile.mkdtemp(prefix="calbridge-bench-"))
    db_path = workdir / "bench.db"
    url = f"sqlite:///{db_path}"
    secret_key = Fernet.generate_key().decode()
    _prepare_database(url, secret_key)

    base_url = f"http://127.0.0.1:{port}"
    if args.client == "httpx":
        # Built before timing, like the raw requests: the client's own cost is not the figure.
        with httpx.Client(base_url=base_url) as builder:
            for delivery in deliveries:
                delivery.request = builder.build_request(
                    "POST", WEBHOOK_PATH, content=delivery.body, headers=delivery.headers
                )
    env = os.environ | {
        "CALBRIDGE_DATABASE_URL": url,
        "CALBRIDGE_SECRET_KEY": secret_key,
        "PYTHONPATH": str(REPO),
    }
    # The real server as operators run it: `calbridge serve` (API only: the worker has no
    # handler for sync.appointment yet, and would only compete for the one SQLite connection).
    command = [sys.executable, "-m", "app.cli", "serve", "--no-worker"]
    if args.profile:
        command = [sys.executable, "-c", _PROFILED_SERVER, str(args.profile.resolve())]
        command += ["--log-level", "warning", "--no-access-log"]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    server = subprocess.Popen(command, cwd=workdir, env=env)
    try:
        runner: Callable[[Any], Any]
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:  # pragma: no cover
            runner = asyncio.run

        async def run() -> dict[str, Any]:
            await wait_until_healthy(base_url, server)
            return await _bench(args, port, deliveries, ServerCpu(server.pid))

        # The pre-built requests are a large, long-lived heap: keep the client's own garbage
        # collector from rescanning it during the timed phases (its pauses would be counted
        # as server latency).
        gc.collect()
        gc.freeze()
        figures = runner(run())
    finally:
        server.send_signal(signal.SIGINT if args.profile else signal.SIGTERM)
        server.wait(timeout=60)

    stored = _stored(db_path)
    shutil.rmtree(workdir, ignore_errors=True)
    accepted = figures["accepted"]
    result = {
        "n": args.connections,
        "t": args.seconds,
        "rounds": args.rounds,
        **figures,
        "stored": stored,
        "stored_ok": stored["inbox_event"] == accepted
        and stored["job"] == accepted
        and stored["appointment"] == accepted,
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
