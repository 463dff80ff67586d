"""`calbridge demo`: the sandbox and calbridge in one process, one appointment's life end to end.

Everything lives in a temporary directory (SQLite database, sandbox CA) removed on exit."""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TextIO
from zoneinfo import ZoneInfo

import httpx
import uvicorn
from cryptography.fernet import Fernet
from pydantic import SecretStr
from standardwebhooks.webhooks import Webhook

from app.config import Settings, WorkerSettings

ORG = "f6DEMO0000000000000000000000000a"
DOMAIN = "contoso.example"
TIME_ZONE = "Europe/Berlin"
JOB_TIMEOUT = 10.0
# booking resource id -> (name, mailbox calbridge is told, whether that mailbox exists)
EMPLOYEES = {
    "brDEMOmax000000000000000000000a": ("Max Mustermann", f"max@{DOMAIN}", True),
    "brDEMOerika00000000000000000000": ("Erika Musterfrau", f"erika@{DOMAIN}", True),
    "brDEMOjonas00000000000000000000": ("Jonas Beispiel", f"jonsa@{DOMAIN}", False),
}
REAL_MAILBOXES = (f"max@{DOMAIN}", f"erika@{DOMAIN}", f"jonas@{DOMAIN}")
MAX, ERIKA, JONAS = EMPLOYEES
# The job kinds the demo waits for; periodic ones (prune, upkeep, sweep) are always pending.
FLOW_KINDS = frozenset(
    {
        "sync.appointment",
        "sync.resync",
        "sync.mailbox",
        "subscription.ensure",
        "employee.check_mailbox",
    }
)


class DemoError(RuntimeError):
    """A step of the demo did not turn out as expected."""


def _appointment(
    appointment_id: str, employee: str, name: str, start: datetime, *, canceled: bool = False
) -> dict[str, Any]:
    person, _, _ = EMPLOYEES[employee]
    first, last = person.split(" ", 1)
    return {
        "class": "APPOINTMENT",
        "id": appointment_id,
        "start": start.isoformat(),
        "end": (start + timedelta(hours=1)).isoformat(),
        "duration": 60,
        "timeZone": TIME_ZONE,
        "name": name,
        "notes": "calbridge demo",
        "canceled": canceled,
        "moved": False,
        "customer": {"firstName": "Erika", "lastName": "Kundin", "email": "kundin@example.com"},
        "bookingResourceList": [
            {"id": employee, "type": "EMPLOYEE", "firstName": first, "lastName": last}
        ],
        "organizationId": ORG,
    }


class _Demo:
    def __init__(self, client: httpx.AsyncClient, out: TextIO, events: Callable[[str], Any]):
        self.client = client
        self.out = out
        self.events = events
        self.webhook_secret = ""
        self.sent = 0

    def say(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def section(self, title: str) -> None:
        self.say()
        self.say(f"== {title} ==")

    async def call(self, method: str, url: str, **kwargs: Any) -> Any:
        response = await self.client.request(method, url, **kwargs)
        if response.status_code >= 300:
            raise DemoError(f"{method} {url} answered {response.status_code}: {response.text}")
        return response.json() if response.content else None

    async def webhook(self, event_type: str, appointment: dict[str, Any]) -> None:
        self.sent += 1
        now = datetime.now(UTC)
        body = json.dumps(
            {
                "type": event_type,
                "timestamp": now.isoformat(),
                "data": {"organizationId": ORG, "appointment": appointment},
            }
        )
        msg_id = f"msg_demo_{self.sent}"
        headers = {
            "content-type": "application/json",
            "webhook-id": msg_id,
            "webhook-timestamp": str(int(now.timestamp())),
            "webhook-signature": Webhook(self.webhook_secret).sign(msg_id, now, body),
        }
        await self.call("POST", f"/webhooks/bookingtime/{ORG}", content=body, headers=headers)
        self.say(f"sent signed webhook {event_type} for {appointment['name']!r}")

    async def settle(self) -> None:
        """Wait (bounded) until no job of the flow is pending or running (periodic ticks
        aside, which are always pending)."""
        deadline = time.monotonic() + JOB_TIMEOUT
        while True:
            busy = []
            for state in ("pending", "running"):
                page = await self.call("GET", "/api/v1/jobs", params={"state": state})
                busy += [job for job in page["items"] if job["kind"] in FLOW_KINDS]
            if not busy:
                return
            if time.monotonic() > deadline:
                raise DemoError(f"sync jobs still unfinished after {JOB_TIMEOUT:.0f} s: {busy}")
            await asyncio.sleep(0.05)

    async def busy(
        self, employee: str, start: datetime, end: datetime, *, want: int
    ) -> list[dict[str, Any]]:
        """The employee's busy intervals once there are `want` of them (bounded wait)."""
        deadline = time.monotonic() + JOB_TIMEOUT
        params = {"start": start.isoformat(), "end": end.isoformat()}
        url = f"/api/v1/connections/{ORG}/employees/{employee}/busy"
        while True:
            page = await self.call("GET", url, params=params)
            intervals: list[dict[str, Any]] = page["intervals"]
            if len(intervals) == want and (want or page["synced_at"]):
                return intervals
            if time.monotonic() > deadline:
                raise DemoError(f"busy intervals of {employee}: {intervals}, expected {want}")
            await asyncio.sleep(0.05)

    def calendars(self) -> None:
        for mailbox in REAL_MAILBOXES:
            items = sorted(self.events(mailbox), key=lambda e: e["start"]["dateTime"])
            self.say(f"Outlook calendar of {mailbox}:")
            if not items:
                self.say("  (no events)")
            for event in items:
                span = _span(_graph_time(event["start"]), _graph_time(event["end"]))
                self.say(f"  {span}  {event.get('subject', '')}")

    async def history(self) -> None:
        page = await self.call("GET", "/api/v1/sync-history", params={"organization_id": ORG})
        for item in reversed(page["items"]):
            at = _time(datetime.fromisoformat(item["created_at"]))
            name = EMPLOYEES.get(item["employee_id"] or "", ("-", "", True))[0]
            self.say(
                f"  {at}  {name:<17} {item['action']:<7} {item['status']:<9} {item['message']}"
            )


# Every time the demo prints is in its time zone and says so: the sandbox, the history and the
# reader's clock need not agree on one.
def _span(start: datetime, end: datetime) -> str:
    zone = ZoneInfo(TIME_ZONE)
    start, end = start.astimezone(zone), end.astimezone(zone)
    return f"{start:%a %Y-%m-%d %H:%M}–{end:%H:%M} ({TIME_ZONE})"


def _time(moment: datetime) -> str:
    return f"{moment.astimezone(ZoneInfo(TIME_ZONE)):%H:%M:%S} ({TIME_ZONE})"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _QuietServer(uvicorn.Server):
    """uvicorn without its signal handlers: Ctrl+C stops the demo as a whole."""

    @contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


@asynccontextmanager
async def _serve(app: Any, port: int) -> AsyncIterator[str]:
    """Serve `app` with uvicorn on a loopback port for the duration of the block."""

    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="critical", access_log=False
    )
    server = _QuietServer(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise DemoError("calbridge did not start")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


def _graph_time(value: dict[str, str]) -> datetime:
    """A Graph `dateTimeTimeZone` as an aware datetime."""
    moment = datetime.fromisoformat(value["dateTime"][:26])
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(value.get("timeZone") or "UTC"))
    return moment


async def run_demo(out: TextIO) -> int:
    """Run the whole flow, writing a readable account to `out`; returns the exit status."""
    from app.main import create_app
    from app.migrate import upgrade
    from app.sandbox import SandboxServer

    with tempfile.TemporaryDirectory(prefix="calbridge-demo-") as tmp:
        async with SandboxServer.start(state_dir=Path(tmp) / "sandbox") as sandbox:
            # Its shutdown complains about idle keep-alive connections; nothing a newcomer needs.
            logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
            control = sandbox.control
            tenant = control.add_tenant(DOMAIN)
            app_registration, client_secret = control.add_app(tenant.id)
            for mailbox in REAL_MAILBOXES:
                control.add_user(tenant.id, mailbox)
            admin_token = secrets.token_urlsafe(24)
            database_url = f"sqlite:///{Path(tmp) / 'calbridge.db'}"
            settings = Settings(
                database_url=database_url,
                secret_key=SecretStr(Fernet.generate_key().decode()),
                admin_token=SecretStr(admin_token),
                graph_url=sandbox.graph_url,
                authority_host=sandbox.authority_host,
                ca_bundle=sandbox.ca_path,
                worker=WorkerSettings(poll_seconds=0.05),
                _env_file=None,
            )
            await asyncio.to_thread(upgrade, database_url)
            # A real server on loopback: Graph's notifications must reach it over HTTP.
            port = _free_port()
            settings = settings.model_copy(update={"public_url": f"http://127.0.0.1:{port}"})
            app = create_app(settings, run_worker=True)
            async with (
                _serve(app, port) as base_url,
                httpx.AsyncClient(
                    base_url=base_url,
                    headers={"Authorization": f"Bearer {admin_token}"},
                    timeout=JOB_TIMEOUT,
                ) as client,
            ):
                demo = _Demo(client, out, control.events)
                demo.section("1. Sandbox")
                demo.say(f"Graph + Entra sandbox at {sandbox.url}")
                demo.say(f"tenant {tenant.id} ({DOMAIN}), mailboxes: {', '.join(REAL_MAILBOXES)}")
                demo.say(f"calbridge at {base_url} (Graph notifications come back there)")
                await _flow(
                    demo,
                    tenant.id,
                    app_registration.client_id,
                    client_secret,
                    control.outlook_create,
                )
    return 0


async def _flow(
    demo: _Demo,
    tenant_id: str,
    client_id: str,
    client_secret: str,
    outlook_create: Callable[[str, dict[str, Any]], str],
) -> None:
    demo.section("2. Connection")
    created = await demo.call(
        "PUT",
        f"/api/v1/connections/{ORG}",
        json={
            "tenant": tenant_id,
            "client_id": client_id,
            "client_secret": client_secret,
            "locale": "en",
        },
    )
    demo.webhook_secret = created["webhook_secret"]
    demo.say(f"connection for bookingtime organisation {ORG} created")
    demo.say(f"webhooks go to /webhooks/bookingtime/{ORG} (signed with its webhook secret)")

    demo.section("3. Employees")
    for employee, (name, mailbox, exists) in EMPLOYEES.items():
        await demo.call(
            "PUT", f"/api/v1/connections/{ORG}/employees/{employee}", json={"mailbox": mailbox}
        )
        note = "" if exists else "   <- mistyped (the mailbox is jonas@)"
        demo.say(f"{name:<17} -> {mailbox}{note}")

    day = datetime.now(ZoneInfo(TIME_ZONE)).replace(hour=0, minute=0, second=0, microsecond=0)
    first = day + timedelta(days=7, hours=10)
    moved = day + timedelta(days=8, hours=14, minutes=30)
    consult = _appointment("edDEMOconsult000000000000000000a", MAX, "Consultation", first)
    review = _appointment(
        "edDEMOreview0000000000000000000a", ERIKA, "Contract review", first + timedelta(hours=2)
    )
    intro = _appointment("edDEMOintro00000000000000000000a", JONAS, "Intro call", first)

    demo.section("4. Appointments created in bookingtime")
    for appointment in (consult, review, intro):
        await demo.webhook("appointment.created", appointment)
    await demo.settle()
    demo.calendars()

    demo.section("5. Consultation moved")
    consult = _appointment(consult["id"], MAX, "Consultation", moved)
    consult["moved"] = True
    await demo.webhook("appointment.moved", consult)
    await demo.settle()
    demo.calendars()

    demo.section("6. Consultation canceled")
    consult = {**consult, "canceled": True}
    await demo.webhook("appointment.canceled", consult)
    await demo.settle()
    demo.calendars()

    demo.section("7. Outlook → calbridge: a meeting made in Outlook blocks Max's time")
    await demo.settle()
    subscriptions = await demo.call("GET", "/api/v1/subscriptions")
    for item in subscriptions["items"]:
        demo.say(f"subscription on {item['mailbox']}: {item['state']}, renewed before it ends")
    meeting_start = day + timedelta(days=7, hours=9)
    outlook_create(
        f"max@{DOMAIN}",
        {
            "subject": "Team meeting",
            "start": {"dateTime": f"{meeting_start:%Y-%m-%dT%H:%M:%S}", "timeZone": TIME_ZONE},
            "end": {
                "dateTime": f"{meeting_start + timedelta(hours=1):%Y-%m-%dT%H:%M:%S}",
                "timeZone": TIME_ZONE,
            },
            "showAs": "busy",
        },
    )
    demo.say("a colleague puts 'Team meeting' into Max's Outlook calendar")
    blocks = await demo.busy(MAX, day, day + timedelta(days=30), want=1)
    for block in blocks:
        start, end = (datetime.fromisoformat(block[key]) for key in ("start", "end"))
        demo.say(f"  busy for bookingtime: {_span(start, end)}")
    erika = await demo.busy(ERIKA, day, day + timedelta(days=30), want=0)
    demo.say(
        "Erika's calendar holds calbridge's own 'Contract review': its change notification is "
        f"recognised as an echo, so it is no busy block ({len(erika)} blocks) and nothing is "
        "written back"
    )

    demo.section("8. Sync history (oldest first)")
    await demo.history()
    demo.say()
    demo.say("Done. The sandbox stops and the temporary database is removed on exit.")


def main(out: TextIO) -> int:
    """Entry point of `calbridge demo`."""
    try:
        return asyncio.run(run_demo(out))
    except DemoError as exc:
        out.write(f"\ndemo failed: {exc}\n")
        return 1
