"""End-to-end benchmark: signed bookingtime webhooks in, Outlook events out, through real
processes, against the Graph/Entra sandbox with Outlook's limits and a Graph latency.

    .venv/bin/python bench/e2e.py                                   # SQLite, in-process worker
    .venv/bin/python bench/e2e.py --database postgres --workers 4   # serve --no-worker + 4 workers
    .venv/bin/python bench/e2e.py --rate 0                          # unpaced: the saturated rate
    .venv/bin/python bench/e2e.py --mailboxes 2 --appointments 6 --latency-ms 5   # a smoke run

What runs: `calbridge sandbox` (its own process, HTTPS with its CA), `calbridge serve` (with the
in-process worker for `--workers 0`, else `--no-worker` plus K `calbridge worker` processes), on
a fresh SQLite file or a fresh PostgreSQL database (`--postgres-url` names the server; the
database is dropped afterwards). Set-up goes through the admin API: one connection, M employees,
one per mailbox. Every Graph request to a mailbox then waits `--latency-ms` inside the mailbox's
concurrency slot (a latency fault per mailbox), as a real Graph round trip would.

The load: N appointments, appointment i assigned to employee i mod M, in three phases: all
created, then all moved (+1 day +1 h), then all cancelled. Each phase sends its N webhooks at
`--rate` per second (open loop, default half the bound below; 0 sends as fast as the intake
answers) and ends when every change is visible in the sandbox; then every mailbox is compared
with what it must hold (each appointment once at its time; after the cancellations, nothing).
Phase after phase keeps the checks exact and each phase's throughput clean.

"Visible" is read from the sandbox's write log (`GET /_sandbox/writes`), which stamps each
create, update and delete with `time.monotonic()` when it is committed. The webhook's `202` is
stamped with `time.monotonic()` here. On Linux both are CLOCK_MONOTONIC, one clock for every
process of the host, so `e2e` = visible - accepted needs no clock sync and ignores wall-clock steps.

The JSON line: `graph_ops_per_s` (event writes the sandbox served per second, summed over the
phases, each timed from its first webhook to its last visible change); `bound_ops_per_s`
(M x min(4/L, 10000/600), Outlook's per-mailbox limits; the second is a 10-minute average, so a
shorter run can beat it without a 429); `efficiency` (their ratio: a capacity figure only when
calbridge cannot keep up with the offered rate, e.g. `--rate 0`, since a run that keeps up
serves what it is offered); `e2e_p50_ms`/`e2e_p99_ms` (202 → visible, all phases);
`throttled_429` (429s the sandbox's throttle sent); `duplicates` (creates that gave a mailbox a
second live event with the same calbridge tag, replayed from the write log, so at any moment);
`final_state_ok`; the parameters; per-phase figures; `cpu_ms_per_write` (CPU milliseconds the
calbridge processes, serve and workers, used per Graph write during the phases: steadier than
the rates on a shared machine, and what a deployment is sized by); `cpu_s` (CPU seconds each
process used during the phases, the PostgreSQL server processes of the run's database included
when the server is local: where the machine's time went); `load_avg` (1-minute load at start
and end: the figures are noisy on a shared machine). `--profile DIR` runs the calbridge processes
under cProfile; `--code DIR` runs another calbridge tree (e.g. `git archive` of a commit).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import math
import os
import shutil
import ssl
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from cryptography.fernet import Fernet
from prometheus_client.parser import text_string_to_metric_families
from standardwebhooks import Webhook

# Run as a script (`python bench/e2e.py`): the repository root makes `bench` importable.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._rawhttp import RawConnection
from bench._stack import (
    REPO,
    Process,
    SandboxInfo,
    base_env,
    cpu_seconds,
    free_port,
    postgres_backend_cpu,
    postgres_database,
    start_process,
    start_sandbox,
    wait_for_log,
)

ORGANIZATION_ID = "f6E2EBench0000000000000000000000"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"calbridge-e2e-bench-webhook-key1").decode()
WEBHOOK_PATH = f"/webhooks/bookingtime/{ORGANIZATION_ID}"
TEMPLATE = REPO / "tests" / "fixtures" / "bookingtime" / "appointment_created.json"
# calbridge's tag on its events (app.graph.TAG_PROPERTY_ID); repeated here so the benchmark
# checks the wire contract rather than whatever the code currently says.
TAG_PROPERTY_ID = "String {19bb3d11-6575-4cf5-900e-b877ada95897} Name calbridgeAppointmentKey"
TIME_ZONE = "Europe/Berlin"
DURATION = timedelta(minutes=30)
MOVE_BY = timedelta(days=1, hours=1)
DEFAULT_POSTGRES_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
DEFAULT_LOAD = 0.5  # offered webhooks per second as a share of the bound
# The series issue 6 asks /metrics to show; `metrics_missing` names those absent at the end of a
# run (a histogram with no observation counts as absent). The workers' own series come from
# their --metrics-port when the run has separate workers.
METRIC_SERIES = (
    "calbridge_webhooks_received",
    "calbridge_bookingtime_intake_seconds",
    "calbridge_jobs",
    "calbridge_queue_pending_jobs",
    "calbridge_queue_runnable_jobs",
    "calbridge_queue_oldest_pending_age_seconds",
    "calbridge_job_duration_seconds",
    "calbridge_graph_requests",
    "calbridge_graph_throttled",
    "calbridge_end_to_end_lag_seconds",
    "calbridge_subscriptions",
    "calbridge_subscription_next_expiry_seconds",
    "calbridge_connection_secret_days_left",
    "calbridge_connection_secret_state",
)
POLL_SECONDS = 0.1
OUTLOOK_CONCURRENCY = 4
OUTLOOK_WINDOW_REQUESTS = 10_000
OUTLOOK_WINDOW_SECONDS = 600


@dataclass
class Appointment:
    index: int
    id: str
    employee_id: str
    mailbox: str
    start: datetime
    moved_start: datetime

    @property
    def tag(self) -> str:
        return f"{ORGANIZATION_ID}:{self.id}:{self.employee_id}"


@dataclass(frozen=True)
class Phase:
    name: str
    event_type: str
    moved: bool
    canceled: bool

    def start_of(self, appointment: Appointment) -> datetime:
        return appointment.moved_start if self.moved else appointment.start


PHASES = (
    Phase("create", "appointment.created", moved=False, canceled=False),
    Phase("move", "appointment.moved", moved=True, canceled=False),
    Phase("cancel", "appointment.canceled", moved=True, canceled=True),
)


def bound_ops_per_s(mailboxes: int, latency_ms: float) -> float:
    per_mailbox = OUTLOOK_WINDOW_REQUESTS / OUTLOOK_WINDOW_SECONDS
    if latency_ms > 0:
        per_mailbox = min(OUTLOOK_CONCURRENCY / (latency_ms / 1000), per_mailbox)
    return mailboxes * per_mailbox


def percentile(values: list[float], share: float) -> float | None:
    """Nearest-rank percentile."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(share * len(ordered)) - 1)]


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


def _utc(value: str) -> datetime:
    return datetime.fromisoformat(value).astimezone(UTC)


# The load ---------------------------------------------------------------------------------------
def make_appointments(count: int, mailboxes: list[str]) -> list[Appointment]:
    zone = ZoneInfo(TIME_ZONE)
    first_day = datetime.now(zone).replace(hour=8, minute=0, second=0, microsecond=0)
    first_day += timedelta(days=2)
    appointments = []
    for index in range(count):
        employee = index % len(mailboxes)
        # Eight half-hour slots a day per employee, days in a row: no two overlap.
        slot = index // len(mailboxes)
        start = first_day + timedelta(days=slot // 8, minutes=30 * (slot % 8))
        appointments.append(
            Appointment(
                index=index,
                id=f"edE2E{index:027d}",
                employee_id=f"brE2E{employee:027d}",
                mailbox=mailboxes[employee],
                start=start,
                moved_start=start + MOVE_BY,
            )
        )
    return appointments


class Signer:
    def __init__(self) -> None:
        template = json.loads(TEMPLATE.read_text(encoding="utf-8"))
        self.appointment_template: dict[str, Any] = template["data"]["appointment"]
        self.webhook = Webhook(WEBHOOK_SECRET)
        self.sent = 0

    def delivery(self, phase: Phase, appointment: Appointment) -> tuple[dict[str, str], bytes]:
        """Headers and body of one signed webhook, stamped now (the intake allows ±5 min)."""
        start = phase.start_of(appointment)
        body = {
            "type": phase.event_type,
            "timestamp": datetime.now(UTC).isoformat(),
            "data": {
                "organizationId": ORGANIZATION_ID,
                "appointment": {
                    **self.appointment_template,
                    "id": appointment.id,
                    "organizationId": ORGANIZATION_ID,
                    "start": start.isoformat(),
                    "end": (start + DURATION).isoformat(),
                    "duration": int(DURATION.total_seconds() // 60),
                    "timeZone": TIME_ZONE,
                    "name": f"Beratung {appointment.index}",
                    "moved": phase.moved,
                    "canceled": phase.canceled,
                    "bookingResourceList": [
                        {
                            "class": "BOOKING_RESOURCE",
                            "id": appointment.employee_id,
                            "type": "EMPLOYEE",
                            "firstName": "Bench",
                            "lastName": appointment.employee_id[-3:],
                            "email": appointment.mailbox,
                        }
                    ],
                },
            },
        }
        text = json.dumps(body, ensure_ascii=False)
        self.sent += 1
        webhook_id = f"msg_e2e_{self.sent:09d}"
        now = datetime.now(UTC)
        headers = {
            "content-type": "application/json",
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": self.webhook.sign(webhook_id, now, text),
        }
        return headers, text.encode()


@dataclass
class SendResult:
    accepted_at: dict[int, float] = field(default_factory=dict)  # index -> monotonic of the 202
    errors: list[str] = field(default_factory=list)
    first_sent_at: float = 0.0
    seconds: float = 0.0


async def send_phase(
    phase: Phase,
    appointments: list[Appointment],
    *,
    signer: Signer,
    pool: asyncio.Queue[RawConnection],
    rate: float,
) -> SendResult:
    """Open loop at `rate` per second (0: as fast as the connections allow)."""
    result = SendResult()
    tasks: list[asyncio.Task[None]] = []

    async def send(connection: RawConnection, appointment: Appointment) -> None:
        try:
            headers, body = signer.delivery(phase, appointment)
            try:
                status, content = await connection.post(WEBHOOK_PATH, headers, body)
            except (OSError, asyncio.IncompleteReadError) as exc:
                result.errors.append(f"{appointment.id}: {type(exc).__name__}: {exc}")
                return
            # 200 is a re-delivery the intake recognised (a reconnect resent it): accepted too.
            if status in (200, 202):
                result.accepted_at[appointment.index] = time.monotonic()
            else:
                result.errors.append(f"{appointment.id}: {status} {content[:200]!r}")
        finally:
            pool.put_nowait(connection)

    started = time.monotonic()
    result.first_sent_at = started
    for number, appointment in enumerate(appointments):
        if rate > 0:
            wait = started + number / rate - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
        connection = await pool.get()
        tasks.append(asyncio.create_task(send(connection, appointment)))
    await asyncio.gather(*tasks)
    result.seconds = time.monotonic() - started
    return result


# Observing the sandbox ------------------------------------------------------------------------
class Observer:
    """Follows the sandbox's write log: replays every mailbox (for duplicates at any moment)
    and records when each appointment's expected change of the current phase became visible."""

    def __init__(self, client: httpx.AsyncClient) -> None:
        self.client = client
        self.sequence = 0
        self.dropped = 0
        self.writes = 0
        self.duplicates = 0
        self.duplicate_examples: list[str] = []
        self.live: dict[tuple[str, str], set[str]] = {}  # (user id, tag) -> live event ids
        self.phase: Phase | None = None
        self.pending: dict[str, Appointment] = {}  # by tag: not visible yet in this phase
        self.visible_at: dict[int, float] = {}  # index -> monotonic of the write
        self.last_match_sequence = 0

    def expect(self, phase: Phase, appointments: list[Appointment]) -> None:
        self.phase = phase
        self.pending = {a.tag: a for a in appointments}
        self.visible_at = {}
        self.last_match_sequence = self.sequence

    async def poll(self) -> None:
        while True:
            response = await self.client.get("/_sandbox/writes", params={"after": self.sequence})
            response.raise_for_status()
            page = response.json()
            self.dropped = page["dropped"]
            for write in page["writes"]:
                self._replay(write)
            if not page["writes"] or page["writes"][-1]["sequence"] >= page["last_sequence"]:
                return

    def _replay(self, write: dict[str, Any]) -> None:
        self.sequence = write["sequence"]
        self.writes += 1
        tag = write["extended"].get(TAG_PROPERTY_ID)
        if tag is None:
            return
        key = (write["user_id"], tag)
        live = self.live.setdefault(key, set())
        kind = write["change_type"]
        if kind == "created":
            if live:
                self.duplicates += 1
                if len(self.duplicate_examples) < 5:
                    self.duplicate_examples.append(f"{tag} in {write['user_id']}")
            live.add(write["event_id"])
        elif kind == "deleted":
            live.discard(write["event_id"])
        appointment = self.pending.get(tag)
        if appointment is None or self.phase is None:
            return
        if self.phase.canceled:
            done = kind == "deleted"
        else:
            start = self.phase.start_of(appointment)
            done = (
                kind != "deleted"
                and write["start"] is not None
                and _utc(write["start"]) == start
                and _utc(write["end"]) == start + DURATION
            )
        if done:
            del self.pending[tag]
            self.visible_at[appointment.index] = write["monotonic"]
            self.last_match_sequence = write["sequence"]

    async def follow(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await self.poll()
            try:
                await asyncio.wait_for(stop.wait(), POLL_SECONDS)
            except TimeoutError:
                pass


async def check_mailboxes(
    client: httpx.AsyncClient, phase: Phase, appointments: list[Appointment], mailboxes: list[str]
) -> list[str]:
    """What every mailbox must hold after `phase`: each appointment once at its time, or
    (after the cancellations) nothing at all. Returns the differences."""
    expected: dict[str, dict[str, Appointment]] = {m: {} for m in mailboxes}
    if not phase.canceled:
        for appointment in appointments:
            expected[appointment.mailbox][appointment.tag] = appointment
    problems: list[str] = []
    for mailbox in mailboxes:
        response = await client.get(f"/_sandbox/mailboxes/{mailbox}/events")
        response.raise_for_status()
        seen: dict[str, int] = {}
        for event in response.json():
            tags = [
                p["value"]
                for p in event.get("singleValueExtendedProperties", [])
                if p["id"] == TAG_PROPERTY_ID
            ]
            if not tags:
                problems.append(f"{mailbox}: an event without calbridge's tag")
                continue
            tag = tags[0]
            seen[tag] = seen.get(tag, 0) + 1
            booked = expected[mailbox].get(tag)
            if booked is None:
                problems.append(f"{mailbox}: unexpected event {tag}")
                continue
            start = _event_time(event["start"])
            want = phase.start_of(booked)
            if start != want or _event_time(event["end"]) != want + DURATION:
                problems.append(f"{mailbox}: {tag} at {start.isoformat()}, not {want.isoformat()}")
        for tag, count in seen.items():
            if count > 1:
                problems.append(f"{mailbox}: {tag} {count} times")
        for tag in expected[mailbox].keys() - seen.keys():
            problems.append(f"{mailbox}: {tag} missing")
    return problems


def _event_time(value: dict[str, str]) -> datetime:
    # Graph's "2030-04-15T10:00:00.0000000" in the zone named beside it (UTC here).
    moment = datetime.fromisoformat(value["dateTime"][:19])
    return moment.replace(tzinfo=ZoneInfo(value.get("timeZone") or "UTC")).astimezone(UTC)


# One run ----------------------------------------------------------------------------------------
@dataclass
class PhaseFigures:
    seconds: float
    send_seconds: float
    sent: int
    writes: int
    e2e: list[float]
    missing: int
    webhook_errors: list[str]
    problems: list[str]

    def as_json(self) -> dict[str, Any]:
        return {
            "seconds": round(self.seconds, 3),
            "send_seconds": round(self.send_seconds, 3),
            # What the sender achieved: below the rate asked for when every connection waits
            # on a slow intake.
            "offered_per_s": round(self.sent / self.send_seconds, 1) if self.send_seconds else None,
            "writes": self.writes,
            "ops_per_s": round(self.writes / self.seconds, 1) if self.seconds > 0 else None,
            "e2e_p50_ms": _ms(percentile(self.e2e, 0.50)),
            "e2e_p99_ms": _ms(percentile(self.e2e, 0.99)),
            "e2e_max_ms": _ms(max(self.e2e, default=None)),
            "missing": self.missing,
            "webhook_errors": len(self.webhook_errors),
            "problems": len(self.problems),
        }


async def run_phase(
    phase: Phase,
    appointments: list[Appointment],
    *,
    observer: Observer,
    sandbox: httpx.AsyncClient,
    signer: Signer,
    pool: asyncio.Queue[RawConnection],
    rate: float,
    stall_seconds: float,
    mailboxes: list[str],
) -> PhaseFigures:
    await observer.poll()
    observer.expect(phase, appointments)
    first_sequence = observer.sequence
    stop = asyncio.Event()
    follower = asyncio.create_task(observer.follow(stop))
    try:
        sent = await send_phase(phase, appointments, signer=signer, pool=pool, rate=rate)
        expected = {a.index for a in appointments if a.index in sent.accepted_at}
        stalled_since = time.monotonic()
        progress = -1
        while not expected <= observer.visible_at.keys():
            if len(observer.visible_at) != progress:
                progress, stalled_since = len(observer.visible_at), time.monotonic()
            elif time.monotonic() - stalled_since > stall_seconds:
                break
            await asyncio.sleep(POLL_SECONDS)
    finally:
        stop.set()
        await follower
    visible = observer.visible_at
    e2e = [visible[i] - sent.accepted_at[i] for i in expected if i in visible]
    last_visible = max((visible[i] for i in expected if i in visible), default=time.monotonic())
    missing = len(expected - visible.keys()) + len(appointments) - len(expected)
    problems = await check_mailboxes(sandbox, phase, appointments, mailboxes)
    return PhaseFigures(
        seconds=last_visible - sent.first_sent_at,
        send_seconds=sent.seconds,
        sent=len(appointments),
        writes=observer.last_match_sequence - first_sequence,
        e2e=e2e,
        missing=missing,
        webhook_errors=sent.errors,
        problems=problems,
    )


@dataclass
class Calbridge:
    url: str
    admin_token: str
    worker_metrics_urls: list[str] = field(default_factory=list)


async def metrics_missing(admin: httpx.AsyncClient, worker_metrics_urls: list[str]) -> list[str]:
    """METRIC_SERIES without a sample in the API's /metrics and the workers' metrics ports."""
    texts = [(await admin.get("/metrics")).raise_for_status().text]
    for url in worker_metrics_urls:
        texts.append((await admin.get(url)).raise_for_status().text)
    shown: set[str] = set()
    for text in texts:
        for family in text_string_to_metric_families(text):
            counts = [s.value for s in family.samples if s.name.endswith("_count")]
            if family.type == "histogram" and not any(counts):
                continue
            if family.samples:
                shown.add(family.name)
    return [name for name in METRIC_SERIES if name not in shown]


async def _setup(
    sandbox: httpx.AsyncClient, admin: httpx.AsyncClient, info: SandboxInfo, mailboxes: list[str]
) -> None:
    async def call(request: Awaitable[httpx.Response]) -> dict[str, Any]:
        response = await request
        if response.status_code >= 300:
            raise RuntimeError(
                f"{response.request.url} answered {response.status_code}: {response.text[:500]}"
            )
        body: dict[str, Any] = response.json()
        return body

    for mailbox in mailboxes:
        await call(
            sandbox.post(
                f"/_sandbox/tenants/{info.tenant_id}/users", json={"user_principal_name": mailbox}
            )
        )
    await call(
        admin.put(
            f"/api/v1/connections/{ORGANIZATION_ID}",
            json={
                "tenant": info.tenant_id,
                "client_id": info.client_id,
                "client_secret": info.client_secret,
                "webhook_secret": WEBHOOK_SECRET,
                "locale": "en",
                # As an admin enters it: the secret's days left show in the metrics.
                "client_secret_expires_at": (datetime.now(UTC) + timedelta(days=180)).isoformat(),
            },
        )
    )
    limit = asyncio.Semaphore(8)

    async def employee(index: int, mailbox: str) -> None:
        async with limit:
            out = await call(
                admin.put(
                    f"/api/v1/connections/{ORGANIZATION_ID}/employees/brE2E{index:027d}",
                    json={"mailbox": mailbox},
                )
            )
        if not out["mailbox_check"]["ok"]:
            raise RuntimeError(f"mailbox check of {mailbox} failed: {out['mailbox_check']}")

    await asyncio.gather(*(employee(i, m) for i, m in enumerate(mailboxes)))


async def _jobs(admin: httpx.AsyncClient, state: str) -> int:
    response = await admin.get(
        "/api/v1/jobs", params={"state": state, "kind": "sync.appointment", "limit": 500}
    )
    response.raise_for_status()
    return len(response.json()["items"])


async def _settle(admin: httpx.AsyncClient, seconds: float) -> None:
    """Until no sync job is pending or running (bounded): late writes land before the check."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if await _jobs(admin, "pending") == 0 and await _jobs(admin, "running") == 0:
            return
        await asyncio.sleep(0.2)


CpuSnapshot = Callable[[], dict[str, float | None]]


async def bench(
    args: argparse.Namespace, info: SandboxInfo, calbridge: Calbridge, cpu: CpuSnapshot
) -> dict[str, Any]:
    mailboxes = [f"bench{i:03d}@contoso.example" for i in range(args.mailboxes)]
    appointments = make_appointments(args.appointments, mailboxes)
    bound = bound_ops_per_s(args.mailboxes, args.latency_ms)
    rate = args.rate if args.rate is not None else DEFAULT_LOAD * bound
    context = ssl.create_default_context(cafile=str(info.ca_path))
    host, port = calbridge.url.removeprefix("http://").rsplit(":", 1)
    pool: asyncio.Queue[RawConnection] = asyncio.Queue()
    for _ in range(args.connections):
        pool.put_nowait(RawConnection(host, int(port)))
    async with (
        httpx.AsyncClient(base_url=info.url, verify=context, timeout=60) as sandbox,
        httpx.AsyncClient(
            base_url=calbridge.url,
            headers={"Authorization": f"Bearer {calbridge.admin_token}"},
            timeout=60,
        ) as admin,
    ):
        await _setup(sandbox, admin, info, mailboxes)
        # Inside each mailbox's concurrency slot, so a slow Graph holds Outlook's 4 slots.
        for mailbox in mailboxes:
            response = await sandbox.post(
                "/_sandbox/faults",
                json={"kind": "latency", "seconds": args.latency_ms / 1000, "mailbox": mailbox},
            )
            response.raise_for_status()
        throttled_before = (await sandbox.get("/_sandbox/stats")).json()["throttled"]
        observer = Observer(sandbox)
        signer = Signer()
        figures: dict[str, PhaseFigures] = {}
        load_start = os.getloadavg()[0]
        cpu_start = cpu()
        for phase in PHASES:
            figures[phase.name] = await run_phase(
                phase,
                appointments,
                observer=observer,
                sandbox=sandbox,
                signer=signer,
                pool=pool,
                rate=rate,
                stall_seconds=args.stall_seconds,
                mailboxes=mailboxes,
            )
            if figures[phase.name].missing:
                break  # what the next phase would measure is undefined
        load_end = os.getloadavg()[0]
        cpu_end = cpu()
        await _settle(admin, args.stall_seconds)
        await observer.poll()
        final = await check_mailboxes(sandbox, PHASES[-1], appointments, mailboxes)
        throttled = (await sandbox.get("/_sandbox/stats")).json()["throttled"] - throttled_before
        rules = (await sandbox.get("/_sandbox/faults")).json()
        graph_requests = sum(rule["fired"] for rule in rules if rule["kind"] == "latency")
        dead, failed = await _jobs(admin, "dead"), await _jobs(admin, "failed")
        missing_series = await metrics_missing(admin, calbridge.worker_metrics_urls)
    while not pool.empty():
        await pool.get_nowait().close()

    cpu_used = _cpu_used(cpu_start, cpu_end)
    seconds = sum(f.seconds for f in figures.values())
    writes = sum(f.writes for f in figures.values())
    e2e = [value for f in figures.values() for value in f.e2e]
    ops_per_s = writes / seconds if seconds > 0 else 0.0
    problems = [p for f in figures.values() for p in f.problems] + final
    final_ok = (
        len(figures) == len(PHASES)
        and not any(f.missing or f.problems for f in figures.values())
        and not final
        and observer.dropped == 0
    )
    return {
        "database": args.database,
        "workers": args.workers,
        "worker_concurrency": args.worker_concurrency,
        "subscriptions": args.subscriptions,
        "latency_ms": args.latency_ms,
        "mailboxes": args.mailboxes,
        "appointments": args.appointments,
        "rate_per_s": round(rate, 1) if rate > 0 else None,
        "graph_ops_per_s": round(ops_per_s, 1),
        "bound_ops_per_s": round(bound, 1),
        "efficiency": round(ops_per_s / bound, 3),
        "e2e_p50_ms": _ms(percentile(e2e, 0.50)),
        "e2e_p99_ms": _ms(percentile(e2e, 0.99)),
        "throttled_429": throttled,
        "duplicates": observer.duplicates,
        "final_state_ok": final_ok,
        "graph_writes": observer.writes,
        "graph_requests": graph_requests,
        "webhook_errors": sum(len(f.webhook_errors) for f in figures.values()),
        "dead_jobs": dead,
        "failed_jobs": failed,
        "metrics_missing": missing_series,
        "phases": {name: f.as_json() for name, f in figures.items()},
        "problems": problems[:5],
        "errors": [e for f in figures.values() for e in f.webhook_errors][:5],
        "duplicate_examples": observer.duplicate_examples,
        "cpu_ms_per_write": _calbridge_cpu_ms_per(cpu_used, writes),
        "cpu_s": {name: None if t is None else round(t, 2) for name, t in cpu_used.items()},
        "load_avg": [round(load_start, 2), round(load_end, 2)],
    }


def _cpu_used(
    start: dict[str, float | None], end: dict[str, float | None]
) -> dict[str, float | None]:
    """CPU seconds each process spent during the phases (None where /proc is unavailable)."""
    used: dict[str, float | None] = {}
    for name, before in start.items():
        after = end.get(name)
        used[name] = None if before is None or after is None else after - before
    return used


def _calbridge_cpu_ms_per(used: dict[str, float | None], writes: int) -> float | None:
    """CPU milliseconds of `calbridge serve` and its workers per write (None without /proc)."""
    calbridge = [
        seconds for name, seconds in used.items() if name == "serve" or name.startswith("worker-")
    ]
    if not writes or not calbridge or any(seconds is None for seconds in calbridge):
        return None
    return round(sum(seconds or 0.0 for seconds in calbridge) / writes * 1000, 3)


def _wait_ready(url: str, serve: Process, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=url, timeout=5) as client:
        while True:
            try:
                if client.get("/readyz").status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if not serve.alive():
                raise RuntimeError(f"calbridge serve exited early:\n{serve.tail()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"calbridge serve not ready after {timeout:.0f} s")
            time.sleep(0.1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="calbridge-e2e-"))
    profile_dir = args.profile.resolve() if args.profile else None
    if profile_dir is not None:
        profile_dir.mkdir(parents=True, exist_ok=True)
    env = base_env(args.code.resolve())
    processes: list[Process] = []
    failed = True
    try:
        sandbox, info = start_sandbox(workdir, env)
        processes.append(sandbox)
        database: AbstractContextManager[str] = (
            postgres_database(args.postgres_url)
            if args.database == "postgres"
            else nullcontext(f"sqlite:///{workdir / 'calbridge.db'}")
        )
        with database as database_url:
            database_name = database_url.rsplit("/", 1)[-1]
            admin_token = uuid.uuid4().hex
            calbridge_env = env | {
                "CALBRIDGE_DATABASE_URL": database_url,
                "CALBRIDGE_SECRET_KEY": Fernet.generate_key().decode(),
                "CALBRIDGE_ADMIN_TOKEN": admin_token,
                "CALBRIDGE_GRAPH_URL": f"{info.url}/v1.0",
                "CALBRIDGE_AUTHORITY_HOST": info.url,
                "CALBRIDGE_CA_BUNDLE": str(info.ca_path),
            }
            if args.worker_concurrency is not None:
                calbridge_env["CALBRIDGE_WORKER__CONCURRENCY"] = str(args.worker_concurrency)
            port = free_port()
            if args.subscriptions:
                # Graph subscriptions on every mailbox: the sandbox notifies calbridge of its own
                # writes too, so each write also costs a delta run (echoes, recognised as such).
                calbridge_env["CALBRIDGE_PUBLIC_URL"] = f"http://127.0.0.1:{port}"
            serve_args = ["serve", "--host", "127.0.0.1", "--port", str(port)]
            if args.workers:
                serve_args.append("--no-worker")
            calbridge_processes: list[Process] = []
            try:
                serve = start_process(
                    "serve",
                    serve_args,
                    workdir=workdir,
                    env=calbridge_env,
                    profile_dir=profile_dir,
                )
                calbridge_processes.append(serve)
                url = f"http://127.0.0.1:{port}"
                _wait_ready(url, serve)
                worker_metrics_urls = []
                for number in range(args.workers):
                    metrics_port = free_port()
                    worker_metrics_urls.append(f"http://127.0.0.1:{metrics_port}/metrics")
                    calbridge_processes.append(
                        start_process(
                            f"worker-{number}",
                            ["worker", "--metrics-port", str(metrics_port)],
                            workdir=workdir,
                            env=calbridge_env,
                            profile_dir=profile_dir,
                        )
                    )
                for worker in calbridge_processes[1:]:
                    wait_for_log(worker, r"worker started", timeout=60)
                every = [*processes, *calbridge_processes]
                baseline: dict[int, float] | None = None  # server pid -> CPU at the start

                def cpu() -> dict[str, float | None]:
                    nonlocal baseline
                    used = {process.name: process.cpu_seconds() for process in every}
                    used["bench"] = cpu_seconds(os.getpid())
                    if args.database == "postgres":
                        # Pooled connections mostly live through the run; one that closes in
                        # between takes its CPU along, so this is a lower bound.
                        now = postgres_backend_cpu(args.postgres_url, database_name)
                        if baseline is None:
                            baseline = now
                        used["postgres"] = sum(t - baseline.get(pid, 0.0) for pid, t in now.items())
                    return used

                result = asyncio.run(
                    bench(args, info, Calbridge(url, admin_token, worker_metrics_urls), cpu)
                )
            finally:
                for process in reversed(calbridge_processes):
                    process.stop()
                processes.extend(calbridge_processes)
        failed = not result["final_state_ok"]
        return result
    finally:
        for process in processes:
            process.stop()
        if failed:
            for process in processes:
                print(f"--- {process.name} (last lines of {process.log_path})", file=sys.stderr)
                print(process.tail(), file=sys.stderr)
        if args.keep:
            print(f"work directory kept: {workdir}", file=sys.stderr)
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=DEFAULT_POSTGRES_URL,
        help="server (and database to connect to) for the throwaway database",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=0,
        help="0: serve's in-process worker; K: serve --no-worker + K workers",
    )
    parser.add_argument(
        "--worker-concurrency",
        type=int,
        default=None,
        help="CALBRIDGE_WORKER__CONCURRENCY (default: calbridge's own)",
    )
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=50.0,
        help="Graph latency L inside each mailbox's concurrency slot",
    )
    parser.add_argument("--mailboxes", type=int, default=50, help="M, one employee each")
    parser.add_argument("--appointments", type=int, default=2000, help="N")
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help=f"webhooks per second; 0 unpaced; default {DEFAULT_LOAD} x bound",
    )
    parser.add_argument(
        "--connections", type=int, default=16, help="keep-alive connections sending webhooks"
    )
    parser.add_argument(
        "--stall-seconds",
        type=float,
        default=60.0,
        help="a phase with no new visible change for this long has failed",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="run the calbridge processes under cProfile, dumps in this dir",
    )
    parser.add_argument(
        "--code",
        type=Path,
        default=REPO,
        help="the calbridge source tree to run (e.g. an export of a commit)",
    )
    parser.add_argument(
        "--subscriptions",
        action="store_true",
        help="set CALBRIDGE_PUBLIC_URL: Graph subscriptions and delta runs on every mailbox",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory and logs")
    args = parser.parse_args(argv)
    if args.mailboxes < 1 or args.appointments < 1 or args.workers < 0 or args.connections < 1:
        parser.error("mailboxes, appointments and connections start at 1, workers at 0")
    result = run(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
