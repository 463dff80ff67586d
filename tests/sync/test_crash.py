"""Crash test: `calbridge worker` runs as a separate process and is killed with SIGKILL at random
moments (once while a create is in flight at Graph) while appointments are created, moved,
edited, cancelled and reassigned through signed webhooks; it is restarted each time. When the
queue is drained, every mailbox holds exactly the expected events: nothing lost, nothing twice.

The run is seeded; the seed is printed, and CALBRIDGE_TEST_CRASH_SEED=<seed> repeats its
choices (process timing aside).
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from app.config import WorkerSettings
from app.models import Job
from tests.conftest import SECRET_KEY
from tests.helpers import eventually
from tests.sync.crash_harness import (
    Script,
    World,
    calendar_problems,
    make_script,
    running_world,
    until_true,
)
from tests.world import MakeWorld

SEED_ENV = "CALBRIDGE_TEST_CRASH_SEED"
MAILBOXES = 4
APPOINTMENTS = 48
KILLS = 4
# Short, so a killed worker's jobs are claimed again quickly; the heartbeat keeps live ones.
LEASE_SECONDS = 2.0
HEARTBEAT_SECONDS = 0.25
# Graph calls take a little while, so kills land in the middle of them.
GRAPH_LATENCY = 0.02
WEBHOOK_PACE = 0.04
START_TIMEOUT = 30.0
DRAIN_TIMEOUT = 45.0


class WorkerProcess:
    """`calbridge worker` as a child process, its log in a file per run."""

    def __init__(self, world: World, workdir: Path) -> None:
        settings = world.settings
        self.workdir = workdir
        env = {k: v for k, v in os.environ.items() if not k.startswith("CALBRIDGE_")}
        env.update(
            {
                "CALBRIDGE_DATABASE_URL": settings.database_url,
                "CALBRIDGE_SECRET_KEY": SECRET_KEY,
                "CALBRIDGE_GRAPH_URL": settings.graph_url,
                "CALBRIDGE_AUTHORITY_HOST": settings.authority_host,
                "CALBRIDGE_CA_BUNDLE": str(settings.ca_bundle),
                "CALBRIDGE_WORKER__LEASE_SECONDS": str(LEASE_SECONDS),
                "CALBRIDGE_WORKER__HEARTBEAT_SECONDS": str(HEARTBEAT_SECONDS),
                "CALBRIDGE_WORKER__POLL_SECONDS": "0.05",
                "CALBRIDGE_WORKER__BACKOFF_BASE_SECONDS": "0.05",
                "CALBRIDGE_WORKER__BACKOFF_MAX_SECONDS": "0.5",
                # Every kill costs the jobs in flight an attempt; they must not run out.
                "CALBRIDGE_WORKER__MAX_ATTEMPTS": "30",
            }
        )
        self.env = env
        self.process: asyncio.subprocess.Process | None = None
        self.runs = 0

    @property
    def log(self) -> Path:
        return self.workdir / f"worker-{self.runs}.log"

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    async def start(self) -> None:
        """Start a worker and wait until it says it runs."""
        self.runs += 1
        # cwd outside the checkout: the worker must not read a developer's .env.
        with self.log.open("wb") as log:
            self.process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "app.cli",
                "worker",
                cwd=self.workdir,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while "worker started" not in self.log.read_text(errors="replace"):
            if self.process.returncode is not None:
                raise AssertionError(f"worker exited at start:\n{self.log.read_text()}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"worker not started in {START_TIMEOUT:.0f} s:\n{self.log.read_text()}"
                )
            await asyncio.sleep(0.02)

    async def kill(self) -> None:
        """SIGKILL: no shutdown code runs, leases are left to lapse."""
        assert self.process is not None
        self.process.kill()
        await self.process.wait()

    async def stop(self) -> int:
        """SIGTERM, and the exit status once it has stopped."""
        assert self.process is not None
        self.process.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.process.wait(), 30)
        except TimeoutError:
            await self.kill()
            raise AssertionError(
                f"worker did not stop on SIGTERM:\n{self.log.read_text()}"
            ) from None

    async def close(self) -> None:
        if self.process is not None and self.process.returncode is None:
            await self.kill()


async def _in_flight(world: World, pid: int) -> list[int]:
    """The jobs the worker with this pid held (worker ids are host:pid:random)."""
    query = select(Job.id).where(Job.state == "running", Job.worker_id.like(f"%:{pid}:%"))
    async with world.database.session() as session:
        return list(await session.scalars(query))


class Run:
    """One crash run: the world, the worker process, and a printed timeline."""

    def __init__(self, world: World, worker: WorkerProcess) -> None:
        self.world = world
        self.worker = worker
        self.started = time.monotonic()

    def say(self, text: str) -> None:
        print(f"+{time.monotonic() - self.started:5.1f} s  {text}")

    async def send(self, script: Script) -> None:
        for phase in script.phases:
            await self.world.send_all(phase, pace=WEBHOOK_PACE)
        self.say(f"all {self.world.sent} webhooks sent")

    async def kill(self, number: int, moment: str) -> list[int]:
        """SIGKILL the worker; the jobs it held then."""
        held = await _in_flight(self.world, self.worker.pid)
        await self.worker.kill()
        self.say(f"kill {number} {moment}: {len(held)} jobs in flight {held}")
        return held

    async def restart(self) -> None:
        await self.worker.start()
        self.say(f"worker run {self.worker.runs} started")


async def test_worker_killed_repeatedly_loses_and_duplicates_nothing(
    make_world: MakeWorld,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # The sandbox logs a traceback for every request whose client was killed mid-way.
    caplog.set_level(logging.CRITICAL, logger="uvicorn.error")
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
    print(f"crash test seed {seed} (rerun with {SEED_ENV}={seed})")
    rng = random.Random(seed)
    async with running_world(make_world, mailboxes=MAILBOXES, seed=seed) as world:
        script = make_script(rng, world.employees, APPOINTMENTS)
        faults = world.sandbox.control.faults
        for employee in world.employees:
            # Inside the mailbox's request slot, so the sandbox counts the request in flight.
            faults.add("latency", seconds=GRAPH_LATENCY, mailbox=employee.mailbox)
        run = Run(world, WorkerProcess(world, tmp_path))
        sender: asyncio.Task[None] | None = None
        try:
            await run.restart()
            # First the hardest moment: Graph has a create, the worker dies before the answer.
            # The request is held inside the sandbox until the kill, then carried out.
            mailbox = rng.choice(world.employees).mailbox
            hold = faults.add("hold", count=1, mailbox=mailbox, path=r"/events$")
            sender = asyncio.create_task(run.send(script))
            await eventually(
                lambda: hold.fired > 0,
                within=20,
                every=0.001,
                failure=f"no request to {mailbox}/events",
            )
            held = await run.kill(1, f"while a request to {mailbox}/events was held")
            assert hold.gate is not None
            hold.gate.release()
            assert held, "the job of the held request was not running at the kill"
            for number in range(2, KILLS + 1):
                await run.restart()
                delay = rng.uniform(0.1, 1.0)
                await asyncio.sleep(delay)
                # Then at the next Graph request in flight, unless the work is done by then.
                busy = await until_true(lambda: world.graph_requests_in_flight() > 0, 3.0)
                moment = "with a Graph request in flight" if busy else "idle"
                await run.kill(number, f"{delay:.2f} s after its start, {moment}")
            await run.restart()
            await sender
            await world.drain(within=DRAIN_TIMEOUT, context=f"seed {seed}: ")
            run.say("queue drained")
            status = await run.worker.stop()
            assert status == 0, f"worker exited {status}:\n{run.worker.log.read_text()}"
        finally:
            if sender is not None and not sender.done():
                sender.cancel()
            await run.worker.close()
        problems = await calendar_problems(world, script)
        if problems:
            # What happened to each troubled appointment, and what the worker said.
            story: list[str] = []
            for appointment_id in sorted(set(re.findall(r"edCrashFault\d+", "\n".join(problems)))):
                story += [f"{appointment_id}:", *await world.story(appointment_id)]
            logs = [
                f"worker run {number}:\n" + worker_log_excerpt(tmp_path / f"worker-{number}.log")
                for number in range(1, run.worker.runs + 1)
            ]
            raise AssertionError(
                f"seed {seed}: {len(problems)} problems:\n"
                + "\n".join([*problems, "", *story, "", *logs])
            )


def worker_log_excerpt(path: Path, lines: int = 40) -> str:
    """The last warnings and errors of a worker run's log."""
    noteworthy = [
        line
        for line in path.read_text(errors="replace").splitlines()
        if '"level": "WARNING"' in line or '"level": "ERROR"' in line
    ]
    return "\n".join(noteworthy[-lines:])


async def test_the_check_names_a_lost_and_a_duplicated_event(
    make_world: MakeWorld,
) -> None:
    """The crash and fault tests can fail: their check catches what a broken calbridge would
    leave behind, naming the mailbox and the appointment."""
    worker = WorkerSettings(poll_seconds=0.02, backoff_base_seconds=0.05)
    async with running_world(make_world, mailboxes=2, worker=worker) as world:
        script = make_script(random.Random(7), world.employees, 8)
        for phase in script.phases:
            await world.send_all(phase)
        await world.drain(within=DRAIN_TIMEOUT)
        assert await calendar_problems(world, script) == []

        control = world.sandbox.control
        mailbox = max((e.mailbox for e in world.employees), key=lambda m: len(control.events(m)))
        lost, copied, *_ = control.events(mailbox)
        control.outlook_delete(mailbox, lost["id"])
        control.outlook_create(
            mailbox,
            {
                key: copied[key]
                for key in ("subject", "start", "end", "singleValueExtendedProperties")
            },
        )
        problems = await calendar_problems(world, script)
        lost_id = _appointment_of(lost)
        copied_id = _appointment_of(copied)
        assert any(
            f"mailbox {mailbox}: appointment {lost_id}" in p and "lost" in p for p in problems
        ), problems
        assert any(
            f"mailbox {mailbox}: appointment {copied_id}" in p and "2 events, duplicated" in p
            for p in problems
        ), problems


def _appointment_of(event: dict[str, Any]) -> str:
    [tag] = [p["value"] for p in event["singleValueExtendedProperties"]]
    return str(tag).split(":")[1]  # organisation:appointment:employee
