"""Benchmark of the bookingtime webhook intake against `GET /healthz` on the real server.

Starts `calbridge serve --no-worker` (one process, SQLite file) as a subprocess, creates one
connection through the admin API, sends pre-signed webhooks over N keep-alive connections for T
seconds (distinct appointments plus ~10 % re-deliveries of ids already answered), then
`GET /healthz` the same way, and prints one JSON line of figures. The two phases alternate in
`--rounds` windows (default 5 of T/5 seconds each), so drift in the machine's speed does not land
on one of them.

    .venv/bin/python bench/intake.py --connections 32 --seconds 10 [--client raw|httpx]

The default client is `raw`: pre-built HTTP/1.1 requests written on plain keep-alive sockets, so
both phases measure what the server sustains rather than the client. `httpx` (one AsyncClient per
connection) costs several times the server's CPU per request, so with it `ratio` mostly compares
the client with itself. `--profile DIR` runs the server under cProfile.

Besides the rates, the line gives the server's CPU per accepted webhook (`cpu_ms_per_webhook`,
re-deliveries included in the cost) and per `/healthz`: on a shared machine the rates swing with
other load, the CPU cost much less.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import gc
import json
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
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

from bench._rawhttp import RawConnection  # noqa: E402
from bench._stack import (  # noqa: E402
    base_env,
    cpu_seconds,
    free_port,
    start_process,
    wait_until_healthy,
)

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


async def _create_connection(base_url: str, admin_token: str) -> None:
    """The one connection the webhooks are signed for, through the admin API."""
    async with httpx.AsyncClient(
        base_url=base_url, headers={"Authorization": f"Bearer {admin_token}"}
    ) as admin:
        response = await admin.put(
            f"/api/v1/connections/{ORGANIZATION_ID}",
            json={
                "tenant": "contoso.onmicrosoft.com",
                "client_id": "00000000-0000-0000-0000-0000000000b1",
                "client_secret": "bench",
                "webhook_secret": WEBHOOK_SECRET,
                "locale": "en",
            },
        )
        if response.status_code >= 300:
            raise SystemExit(f"creating the connection: {response.status_code} {response.text}")


def _presign(count: int, builder: RawConnection) -> list[Delivery]:
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
        raw = builder.build("POST", WEBHOOK_PATH, headers, body)
        deliveries.append(Delivery(body, headers, raw))
    return deliveries


Connection = RawConnection | HttpxConnection


def _connections(kind: str, port: int, count: int) -> list[Connection]:
    if kind == "raw":
        return [RawConnection("127.0.0.1", port) for _ in range(count)]
    return [HttpxConnection(f"http://127.0.0.1:{port}") for _ in range(count)]


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


def _cpu_ms_per(seconds: float, count: int) -> float | None:
    return round(seconds / count * 1000, 4) if count else None


async def _bench(
    args: argparse.Namespace, port: int, deliveries: list[Delivery], server_pid: int
) -> dict[str, Any]:
    tally = Tally()
    answered: list[Delivery] = []  # distinct deliveries already accepted: duplicate candidates
    next_index = 0
    rng = random.Random(12)
    healthz_raw = RawConnection("127.0.0.1", port).build("GET", "/healthz", {}, b"")

    async def get_healthz(connection: Connection) -> tuple[int, bytes]:
        if isinstance(connection, RawConnection):
            return await connection.send(healthz_raw)
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
            status, body = await connection.send(delivery.raw)
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

    connections = _connections(args.client, port, args.connections)
    try:
        # Every connection open and warm before the clock starts.
        await asyncio.gather(*(get_healthz(connection) for connection in connections))
        # The phases alternate in rounds (T/R seconds each), so a machine whose speed drifts
        # (other tenants, frequency scaling) weighs on both alike instead of on one phase.
        window = args.seconds / args.rounds
        webhook_seconds = healthz_seconds = 0.0
        cpu_webhooks = cpu_healthz = 0.0
        cpu_known = True  # False without /proc
        for _ in range(args.rounds):
            before = cpu_seconds(server_pid)
            webhook_seconds += await _run_for(window, connections, send_webhook)
            middle = cpu_seconds(server_pid)
            healthz_seconds += await _run_for(window, connections, count_healthz)
            after = cpu_seconds(server_pid)
            if before is None or middle is None or after is None:
                cpu_known = False
            else:
                cpu_webhooks += middle - before
                cpu_healthz += after - middle
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
        "cpu_ms_per_webhook": _cpu_ms_per(cpu_webhooks, tally.accepted) if cpu_known else None,
        "cpu_ms_per_healthz": _cpu_ms_per(cpu_healthz, healthz) if cpu_known else None,
    }


def _stored(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as db:
        return {
            table: db.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
            for table in ("inbox_event", "appointment", "job")
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    parser.add_argument(
        "--rounds", type=int, default=5, help="the phases alternate this many times (T/R each)"
    )
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument("--profile", type=Path, help="run the server under cProfile, dump in DIR")
    parser.add_argument(
        "--pool", type=int, default=0, help="pre-signed deliveries (default 6000 per second)"
    )
    args = parser.parse_args()

    port = free_port()
    deliveries = _presign(args.pool or int(6000 * args.seconds), RawConnection("127.0.0.1", port))
    workdir = Path(tempfile.mkdtemp(prefix="calbridge-bench-"))
    db_path = workdir / "bench.db"
    admin_token = uuid.uuid4().hex
    base_url = f"http://127.0.0.1:{port}"
    if args.client == "httpx":
        # Built before timing, like the raw requests: the client's own cost is not the figure.
        with httpx.Client(base_url=base_url) as builder:
            for delivery in deliveries:
                delivery.request = builder.build_request(
                    "POST", WEBHOOK_PATH, content=delivery.body, headers=delivery.headers
                )
    env = base_env() | {
        "CALBRIDGE_DATABASE_URL": f"sqlite:///{db_path}",
        "CALBRIDGE_SECRET_KEY": Fernet.generate_key().decode(),
        "CALBRIDGE_ADMIN_TOKEN": admin_token,
    }
    profile_dir = args.profile.resolve() if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    # The API alone: a worker would only compete with it for the one SQLite connection.
    server = start_process(
        "serve",
        ["serve", "--no-worker", "--host", "127.0.0.1", "--port", str(port)],
        workdir=workdir,
        env=env,
        profile_dir=profile_dir,
    )
    try:
        runner: Callable[[Any], Any]
        try:
            import uvloop

            runner = uvloop.run
        except ImportError:  # pragma: no cover
            runner = asyncio.run

        async def run() -> dict[str, Any]:
            await wait_until_healthy(base_url, server.popen)
            await _create_connection(base_url, admin_token)
            return await _bench(args, port, deliveries, server.popen.pid)

        # The pre-built requests are a large, long-lived heap: keep the client's own garbage
        # collector from rescanning it during the timed phases (its pauses would be counted
        # as server latency).
        gc.collect()
        gc.freeze()
        figures = runner(run())
    except BaseException:
        print(server.tail(), file=sys.stderr)
        raise
    finally:
        server.stop()

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
