"""Benchmark of the Graph change-notification intake against `GET /healthz` on the real server,
and of a notification storm for one mailbox.

Phase 1 starts `calbridge serve --no-worker` (SQLite file) as a subprocess and sends valid
single-item notifications (rotating over `--mailboxes` subscriptions) over N keep-alive
connections for T seconds, then `GET /healthz` the same way with the same clients.
Phase 2 starts the Graph sandbox and `calbridge serve` with its worker, sends `--storm`
notifications for one mailbox as fast as N connections allow, waits until the queue is idle and
counts the `sync.mailbox` job rows (delta runs) the storm caused.
Phase 3 runs calbridge with `CALBRIDGE_PUBLIC_URL` set, so it keeps real subscriptions on
`--busy-mailboxes` sandbox mailboxes and the sandbox delivers its change notifications to it; a
person then creates, moves (new start and end) and deletes meetings in those mailboxes, one change
at a time per mailbox, and each change's lag is measured from the sandbox's answer to the moment
the busy API shows it (polled every 10 ms). Prints one JSON line, with the serving process's CPU
per accepted notification of phase 1 (`cpu_ms_per_notification`), steadier than the rates on a
shared machine.

    .venv/bin/python bench/notifications.py --connections 32 --seconds 10 --storm 10000 \
        [--client raw|httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import closing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from cryptography.fernet import Fernet

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench._rawhttp import RawConnection  # noqa: E402
from bench._stack import (  # noqa: E402
    Process,
    base_env,
    cpu_seconds,
    free_port,
    start_process,
    start_sandbox,
    wait_until_healthy,
)

ORGANIZATION_ID = "f6BenchNotifications000000000000"
NOTIFICATIONS_PATH = "/webhooks/graph/notifications"
STORM_MAILBOX = "max@contoso.example"


@dataclass(frozen=True)
class Sub:
    graph_id: str
    mailbox: str
    user_id: str
    client_state: str


@dataclass
class Tally:
    latencies: list[float] = field(default_factory=list)
    statuses: dict[int, int] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)


def _prepare_database(
    url: str,
    secret_key: str,
    subs: list[Sub],
    *,
    tenant: str = "contoso.onmicrosoft.com",
    client_id: str = "00000000-0000-0000-0000-0000000000b2",
    client_secret: str = "bench",
) -> None:
    """Schema at head (`calbridge migrate`), one connection, an employee and an active
    subscription per mailbox: rows no public API creates with a known client state."""
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import create_engine
    from sqlalchemy.orm import Session

    from app.crypto import SecretBox
    from app.models import Connection, Employee, Subscription

    env = base_env() | {"CALBRIDGE_DATABASE_URL": url, "CALBRIDGE_SECRET_KEY": secret_key}
    subprocess.run(
        [sys.executable, "-m", "app.cli", "migrate"], env=env, check=True, capture_output=True
    )
    box = SecretBox([secret_key.encode()])
    engine = create_engine(url)
    with Session(engine) as session, session.begin():
        connection = Connection(
            organization_id=ORGANIZATION_ID,
            tenant=tenant,
            client_id=client_id,
            client_secret_encrypted=box.encrypt(client_secret),
            webhook_secret_encrypted=box.encrypt("whsec_bench"),
        )
        session.add(connection)
        session.flush()
        for index, sub in enumerate(subs):
            session.add(
                Employee(
                    connection_id=connection.id,
                    booking_resource_id=f"brBench{index:025d}",
                    mailbox=sub.mailbox,
                )
            )
            session.add(
                Subscription(
                    connection_id=connection.id,
                    mailbox=sub.mailbox,
                    graph_user_id=sub.user_id,
                    graph_subscription_id=sub.graph_id,
                    client_state_encrypted=box.encrypt(sub.client_state),
                    state="active",
                    expires_at=datetime.now(UTC) + timedelta(days=6),
                )
            )
    engine.dispose()


def _body(sub: Sub, index: int) -> bytes:
    resource = f"Users/{sub.user_id}/Events/AAMkBench{index:012d}="
    item = {
        "id": f"n{index}",
        "subscriptionId": sub.graph_id,
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "clientState": sub.client_state,
        "changeType": "updated",
        "resource": resource,
        "tenantId": "84bd8158-6d4d-4958-8b9f-9d6445542f95",
        "resourceData": {
            "@odata.type": "#Microsoft.Graph.Event",
            "@odata.id": resource,
            "id": f"AAMkBench{index:012d}=",
        },
    }
    return json.dumps({"value": [item]}).encode()


def _subs(count: int, *, mailbox: str | None = None, user_id: str | None = None) -> list[Sub]:
    return [
        Sub(
            graph_id=str(uuid.uuid4()),
            mailbox=mailbox or f"bench{index}@contoso.example",
            user_id=user_id or str(uuid.uuid4()),
            client_state=Fernet.generate_key().decode()[:64],
        )
        for index in range(count)
    ]


class Client:
    """One keep-alive connection: the raw-socket client (default; far cheaper than httpx, which
    matters when the load shares the machine with the server) or one httpx client each."""

    def __init__(self, base_url: str, kind: str = "raw") -> None:
        host, port = base_url.removeprefix("http://").rsplit(":", 1)
        self.raw = RawConnection(host, int(port)) if kind == "raw" else None
        limits = httpx.Limits(max_connections=1, max_keepalive_connections=1)
        self.http = (
            None
            if self.raw is not None
            else httpx.AsyncClient(base_url=base_url, limits=limits, timeout=30.0)
        )

    async def post(self, path: str, body: bytes) -> tuple[int, str]:
        headers = {"content-type": "application/json"}
        if self.raw is not None:
            status, content = await self.raw.post(path, headers, body)
            return status, content.decode(errors="replace")
        assert self.http is not None
        response = await self.http.post(path, content=body, headers=headers)
        return response.status_code, response.text

    async def get(self, path: str) -> int:
        if self.raw is not None:
            return (await self.raw.get(path))[0]
        assert self.http is not None
        return (await self.http.get(path)).status_code

    async def close(self) -> None:
        if self.raw is not None:
            await self.raw.close()
        if self.http is not None:
            await self.http.aclose()


async def _run(
    clients: list[Client], step: Callable[[Client], Awaitable[bool]], seconds: float | None
) -> float:
    """`step` in one loop per client until it returns False or the time is up."""
    started = time.perf_counter()
    deadline = None if seconds is None else started + seconds

    async def loop(client: Client) -> None:
        while deadline is None or time.perf_counter() < deadline:
            if not await step(client):
                return

    await asyncio.gather(*(loop(client) for client in clients))
    return time.perf_counter() - started


def _summary(tally: Tally, seconds: float) -> dict[str, Any]:
    latencies = sorted(tally.latencies)
    p99_index = max(0, int(len(latencies) * 0.99) - 1)
    ok = tally.statuses.get(202, 0)
    return {
        "per_s": round(ok / seconds, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
        "p99_ms": round(latencies[p99_index] * 1000, 2) if latencies else None,
        "statuses": {str(k): v for k, v in sorted(tally.statuses.items())},
        "errors": tally.errors[:5],
    }


async def _post_loop(
    clients: list[Client], bodies: list[bytes], seconds: float | None
) -> tuple[Tally, float]:
    tally = Tally()
    position = 0

    async def step(client: Client) -> bool:
        nonlocal position
        if seconds is None and position >= len(bodies):
            return False
        body = bodies[position % len(bodies)]
        position += 1
        started = time.perf_counter()
        status, text = await client.post(NOTIFICATIONS_PATH, body)
        tally.latencies.append(time.perf_counter() - started)
        tally.statuses[status] = tally.statuses.get(status, 0) + 1
        if status != 202 and len(tally.errors) < 5:
            tally.errors.append(f"{status} {text[:200]}")
        return True

    taken = await _run(clients, step, seconds)
    return tally, taken


async def _intake_phase(
    base_url: str, connections: int, seconds: float, subs: list[Sub], client: str, server_pid: int
) -> dict[str, Any]:
    bodies = [_body(subs[index % len(subs)], index) for index in range(20_000)]
    clients = [Client(base_url, client) for _ in range(connections)]
    try:
        await asyncio.gather(*(c.get("/healthz") for c in clients))  # warm
        cpu_before = cpu_seconds(server_pid)
        tally, taken = await _post_loop(clients, bodies, seconds)
        cpu_after = cpu_seconds(server_pid)
        healthz = Tally()

        async def get_healthz(client: Client) -> bool:
            started = time.perf_counter()
            status = await client.get("/healthz")
            healthz.latencies.append(time.perf_counter() - started)
            healthz.statuses[status] = healthz.statuses.get(status, 0) + 1
            return True

        healthz_seconds = await _run(clients, get_healthz, seconds)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    figures = _summary(tally, taken)
    accepted = tally.statuses.get(202, 0)
    healthz_ok = healthz.statuses.get(200, 0)
    healthz_per_s = healthz_ok / healthz_seconds
    latencies = sorted(healthz.latencies)
    return {
        **figures,
        "healthz_per_s": round(healthz_per_s, 1),
        # The same client and connections on a route that does nothing: the machine's floor.
        "healthz_p50_ms": round(statistics.median(latencies) * 1000, 2),
        "healthz_p99_ms": round(latencies[max(0, int(len(latencies) * 0.99) - 1)] * 1000, 2),
        "ratio": round(figures["per_s"] / healthz_per_s, 3),
        "cpu_ms_per_notification": (
            round((cpu_after - cpu_before) / accepted * 1000, 4)
            if cpu_before is not None and cpu_after is not None and accepted
            else None
        ),
    }


def _sync_jobs(path: Path) -> dict[str, int]:
    with closing(sqlite3.connect(path)) as db:
        rows = db.execute(
            "SELECT state, count(*) FROM job WHERE kind = 'sync.mailbox' GROUP BY state"
        ).fetchall()
    return {state: count for state, count in rows}


async def _storm_phase(
    base_url: str, connections: int, count: int, sub: Sub, db_path: Path, client: str
) -> dict[str, Any]:
    before = sum(_sync_jobs(db_path).values())
    bodies = [_body(sub, index) for index in range(count)]
    clients = [Client(base_url, client) for _ in range(connections)]
    try:
        await asyncio.gather(*(c.get("/healthz") for c in clients))
        tally, taken = await _post_loop(clients, bodies, None)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    # Let the worker finish what the storm queued before counting.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        jobs = _sync_jobs(db_path)
        if not jobs.get("pending") and not jobs.get("running"):
            break
        await asyncio.sleep(0.2)
    jobs = _sync_jobs(db_path)
    figures = _summary(tally, taken)
    return {
        "notifications": count,
        "seconds": round(taken, 2),
        **figures,
        "delta_runs": sum(jobs.values()) - before,
        "sync_jobs_by_state": jobs,
    }


BUSY_POLL_SECONDS = 0.01
BUSY_TIMEOUT_SECONDS = 30.0


async def _busy_phase(
    base_url: str, admin_token: str, info: Any, mailboxes: int, rounds: int
) -> dict[str, Any]:
    """Lag from a person's change in Outlook to the busy API, per change kind."""
    import ssl
    from datetime import UTC, datetime, timedelta

    context = ssl.create_default_context(cafile=str(info.ca_path))
    lags: dict[str, list[float]] = {"create": [], "move": [], "delete": []}
    errors: list[str] = []
    async with (
        httpx.AsyncClient(base_url=info.url, verify=context, timeout=30) as sandbox,
        httpx.AsyncClient(
            base_url=base_url, headers={"Authorization": f"Bearer {admin_token}"}, timeout=30
        ) as admin,
    ):

        async def ok(response: httpx.Response) -> Any:
            if response.status_code >= 300:
                raise RuntimeError(
                    f"{response.request.url} answered {response.status_code}: {response.text[:300]}"
                )
            return response.json() if response.content else None

        await ok(
            await admin.put(
                f"/api/v1/connections/{ORGANIZATION_ID}",
                json={
                    "tenant": info.tenant_id,
                    "client_id": info.client_id,
                    "client_secret": info.client_secret,
                    "locale": "en",
                },
            )
        )
        names = [f"busy{index:02d}@contoso.example" for index in range(mailboxes)]
        for index, mailbox in enumerate(names):
            await ok(
                await sandbox.post(
                    f"/_sandbox/tenants/{info.tenant_id}/users",
                    json={"user_principal_name": mailbox},
                )
            )
            await ok(
                await admin.put(
                    f"/api/v1/connections/{ORGANIZATION_ID}/employees/brBusy{index:026d}",
                    json={"mailbox": mailbox},
                )
            )
        deadline = time.monotonic() + 60
        while True:
            subs = (await ok(await admin.get("/api/v1/subscriptions")))["items"]
            if sum(sub["state"] == "active" for sub in subs) >= mailboxes:
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"subscriptions not active after 60 s: {subs}")
            await asyncio.sleep(0.2)
        await asyncio.sleep(1.0)  # the first delta runs (full syncs) are done

        day = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        window = {
            "start": (day - timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end": (day + timedelta(days=60)).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "merge": "false",
        }

        def graph_time(moment: datetime) -> dict[str, str]:
            return {"dateTime": moment.strftime("%Y-%m-%dT%H:%M:%S"), "timeZone": "UTC"}

        async def shown(employee: str, start: datetime | None) -> bool:
            """Whether the busy API's blocks are exactly the one at `start` (None: no block)."""
            body = await ok(
                await admin.get(
                    f"/api/v1/connections/{ORGANIZATION_ID}/employees/{employee}/busy",
                    params=window,
                )
            )
            starts = [item["start"] for item in body["intervals"]]
            want = [] if start is None else [start.strftime("%Y-%m-%dT%H:%M:%SZ")]
            return starts == want

        async def lag(kind: str, employee: str, start: datetime | None) -> None:
            began = time.perf_counter()
            while not await shown(employee, start):
                if time.perf_counter() - began > BUSY_TIMEOUT_SECONDS:
                    errors.append(f"{kind} in {employee} not shown after {BUSY_TIMEOUT_SECONDS} s")
                    return
                await asyncio.sleep(BUSY_POLL_SECONDS)
            lags[kind].append(time.perf_counter() - began)

        async def person(index: int, mailbox: str) -> None:
            employee = f"brBusy{index:026d}"
            for number in range(rounds):
                start = day + timedelta(days=2 + number % 20, hours=8 + index % 8)
                created = await ok(
                    await sandbox.post(
                        f"/_sandbox/mailboxes/{mailbox}/events",
                        json={
                            "subject": f"Meeting {number}",
                            "start": graph_time(start),
                            "end": graph_time(start + timedelta(hours=1)),
                            "showAs": "busy",
                        },
                    )
                )
                await lag("create", employee, start)
                moved = start + timedelta(minutes=30)
                await ok(
                    await sandbox.patch(
                        f"/_sandbox/mailboxes/{mailbox}/events/{created['id']}",
                        json={
                            "start": graph_time(moved),
                            "end": graph_time(moved + timedelta(hours=1)),
                        },
                    )
                )
                await lag("move", employee, moved)
                response = await sandbox.delete(
                    f"/_sandbox/mailboxes/{mailbox}/events/{created['id']}"
                )
                if response.status_code != 204:
                    raise RuntimeError(f"delete answered {response.status_code}")
                await lag("delete", employee, None)

        await asyncio.gather(*(person(i, m) for i, m in enumerate(names)))

    every = sorted(value for values in lags.values() for value in values)

    def percentile(values: list[float], share: float) -> float | None:
        if not values:
            return None
        ordered = sorted(values)
        return round(ordered[max(0, math.ceil(len(ordered) * share) - 1)] * 1000, 1)

    return {
        "mailboxes": mailboxes,
        "changes": len(every),
        "lag_p50_ms": percentile(every, 0.5),
        "lag_p99_ms": percentile(every, 0.99),
        "lag_max_ms": percentile(every, 1.0),
        "by_kind_p99_ms": {kind: percentile(values, 0.99) for kind, values in lags.items()},
        "errors": errors[:5],
    }


def _sandbox_env(info: Any) -> dict[str, str]:
    """calbridge's settings that point Graph and Entra at the sandbox."""
    return {
        "CALBRIDGE_GRAPH_URL": f"{info.url}/v1.0",
        "CALBRIDGE_AUTHORITY_HOST": info.url,
        "CALBRIDGE_CA_BUNDLE": str(info.ca_path),
    }


def _serve(workdir: Path, env: dict[str, str], port: int, *, worker: bool, name: str) -> Process:
    args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
    if not worker:
        args.append("--no-worker")
    return start_process(name, args, workdir=workdir, env=env)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=32, help="concurrent connections")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    parser.add_argument("--mailboxes", type=int, default=64, help="subscriptions in phase 1")
    parser.add_argument("--storm", type=int, default=10_000, help="notifications in phase 2")
    parser.add_argument("--client", choices=("raw", "httpx"), default="raw")
    parser.add_argument(
        "--busy-mailboxes", type=int, default=5, help="mailboxes a person edits in phase 3"
    )
    parser.add_argument(
        "--busy-rounds", type=int, default=8, help="create, move, delete rounds per mailbox"
    )
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="calbridge-bench-notifications-"))
    base = base_env()
    try:
        # Phase 1: intake throughput and latency, API only.
        secret_key = Fernet.generate_key().decode()
        intake_db = workdir / "intake.db"
        subs = _subs(args.mailboxes)
        _prepare_database(f"sqlite:///{intake_db}", secret_key, subs)
        port = free_port()
        env = base | {
            "CALBRIDGE_DATABASE_URL": f"sqlite:///{intake_db}",
            "CALBRIDGE_SECRET_KEY": secret_key,
        }
        server = _serve(workdir, env, port, worker=False, name="intake")
        try:

            async def intake() -> dict[str, Any]:
                await wait_until_healthy(f"http://127.0.0.1:{port}", server.popen)
                return await _intake_phase(
                    f"http://127.0.0.1:{port}",
                    args.connections,
                    args.seconds,
                    subs,
                    args.client,
                    server.popen.pid,
                )

            intake_figures = asyncio.run(intake())
        finally:
            server.stop()

        # Phase 2: the storm, with the worker running delta runs against the sandbox.
        sandbox, info = start_sandbox(workdir, base)
        try:
            storm_db = workdir / "storm.db"
            user_id = str(uuid.uuid5(uuid.NAMESPACE_DNS, STORM_MAILBOX))  # seed_demo's id
            (storm_sub,) = _subs(1, mailbox=STORM_MAILBOX, user_id=user_id)
            _prepare_database(
                f"sqlite:///{storm_db}",
                secret_key,
                [storm_sub],
                tenant=info.tenant_id,
                client_id=info.client_id,
                client_secret=info.client_secret,
            )
            port = free_port()
            env = base | {
                "CALBRIDGE_DATABASE_URL": f"sqlite:///{storm_db}",
                "CALBRIDGE_SECRET_KEY": secret_key,
                **_sandbox_env(info),
            }
            server = _serve(workdir, env, port, worker=True, name="storm")
            try:

                async def storm() -> dict[str, Any]:
                    await wait_until_healthy(f"http://127.0.0.1:{port}", server.popen)
                    return await _storm_phase(
                        f"http://127.0.0.1:{port}",
                        args.connections,
                        args.storm,
                        storm_sub,
                        storm_db,
                        args.client,
                    )

                storm_figures = asyncio.run(storm())
            finally:
                server.stop()

            # Phase 3: a person's changes in Outlook, through real subscriptions, to the busy API.
            busy_db = workdir / "busy.db"
            port = free_port()
            admin_token = Fernet.generate_key().decode()
            env = base | {
                "CALBRIDGE_DATABASE_URL": f"sqlite:///{busy_db}",
                "CALBRIDGE_SECRET_KEY": secret_key,
                "CALBRIDGE_ADMIN_TOKEN": admin_token,
                "CALBRIDGE_PUBLIC_URL": f"http://127.0.0.1:{port}",
                **_sandbox_env(info),
            }
            server = _serve(workdir, env, port, worker=True, name="busy")
            try:

                async def busy() -> dict[str, Any]:
                    await wait_until_healthy(f"http://127.0.0.1:{port}", server.popen)
                    return await _busy_phase(
                        f"http://127.0.0.1:{port}",
                        admin_token,
                        info,
                        args.busy_mailboxes,
                        args.busy_rounds,
                    )

                busy_figures = asyncio.run(busy())
            finally:
                server.stop()
        finally:
            sandbox.stop()
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    print(
        json.dumps(
            {
                "n": args.connections,
                "client": args.client,
                "t": args.seconds,
                "intake": intake_figures,
                "storm": storm_figures,
                "busy": busy_figures,
                "cpu_ms_per_notification": intake_figures["cpu_ms_per_notification"],
                "targets_met": bool(
                    intake_figures["p99_ms"] is not None
                    and intake_figures["p99_ms"] <= 50
                    and intake_figures["ratio"] >= 0.5
                    and storm_figures["delta_runs"] <= 5
                    and busy_figures["lag_p99_ms"] is not None
                    and busy_figures["lag_p99_ms"] <= 2000
                    and not busy_figures["errors"]
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
