"""Fault test: the sandbox fails a fifth of the Graph calls (429 with Retry-After, 503, 504,
dropped connections, hangs the client gives up on, and slow answers carried out after the client
gave up) while calbridge's real worker syncs appointments that are created, moved, edited,
cancelled and reassigned. In the end every calendar is as expected, without duplicates, and no
job is dead or failed.

The run is seeded; the seed is printed, and CALBRIDGE_TEST_FAULT_SEED=<seed> repeats its
choices (concurrency aside).
"""

from __future__ import annotations

import os
import random
import time
from typing import Any

from sqlalchemy import select

from app.busy.service import sync_mailbox_impl
from app.config import WorkerSettings
from app.credentials.clients import GraphClients
from app.crypto import SecretBox
from app.models import Connection
from app.sandbox import FaultKind, FaultRule, Faults
from tests.conftest import SECRET_KEY
from tests.helpers import eventually
from tests.sync.crash_harness import (
    Delivery,
    Employee,
    Script,
    calendar_problems,
    make_script,
    running_world,
)
from tests.world import MakeWorld

SEED_ENV = "CALBRIDGE_TEST_FAULT_SEED"
MAILBOXES = 4
APPOINTMENTS = 40
FAULT_RATE = 0.20
# Graph calls time out after this; a "timeout" fault hangs longer, a "slow" one is carried out
# SLOW_AFTER later. No retry comes sooner than RETRY_FLOOR after a failure (backoff and the
# Retry-After values below): a write landing after its own retry is another matter, see
# test_a_create_carried_out_after_its_retry_leaves_no_event.
GRAPH_TIMEOUT = 1.0
SLOW_AFTER = 0.02
RETRY_FLOOR = 0.5
DRAIN_TIMEOUT = 50.0
TOKEN_PATH = r"/oauth2/v2\.0/token$"

# (kind, sandbox rule options): the mix, each kind an equal share of FAULT_RATE.
MIX: list[tuple[str, FaultKind, dict[str, Any]]] = [
    ("429", "429", {"retry_after": str(RETRY_FLOOR)}),
    ("503", "503", {"retry_after": str(RETRY_FLOOR)}),
    ("504", "504", {}),
    ("reset", "drop", {}),
    ("timeout", "timeout", {"seconds": 5.0}),
    # Not a failure to the sandbox: the request is carried out, but after the client has given
    # up, so calbridge cannot know whether its create happened.
    ("slow", "latency", {"seconds": GRAPH_TIMEOUT + SLOW_AFTER}),
]

WORKER = WorkerSettings(
    concurrency=8,
    lease_seconds=30.0,
    heartbeat_seconds=1.0,
    poll_seconds=0.02,
    # Attempt n waits between half and all of min(max, base * 2 ** (n - 1)).
    backoff_base_seconds=2 * RETRY_FLOOR,
    backoff_max_seconds=4 * RETRY_FLOOR,
    # A job fails its attempt with about 20-40 % here; 25 attempts make dying a 1e-10 event.
    max_attempts=25,
    shutdown_grace_seconds=5.0,
)


def _inject(faults: Faults, employees: list[Employee]) -> dict[str, list[FaultRule]]:
    """Each kind once on the first calendar requests (so every kind is seen at least once),
    then each at an equal share of FAULT_RATE on every mailbox's calendar requests."""
    rules: dict[str, list[FaultRule]] = {name: [] for name, _, _ in MIX}
    first, second = employees[0].mailbox, employees[1].mailbox
    for name, kind, options in MIX:
        # One failure fires per request, so these hit the first five requests to `first`;
        # the slow one is not a failure and gets a mailbox of its own.
        mailbox = second if kind == "latency" else first
        rules[name].append(faults.add(kind, count=1, mailbox=mailbox, path="/events", **options))
    # Rules are drawn in order and a request gets at most one failure, so a per-kind rate r
    # gives 1 - (1 - r) ** len(MIX) in all.
    rate = 1 - (1 - FAULT_RATE) ** (1 / len(MIX))
    for employee in employees:
        for name, kind, options in MIX:
            rule = faults.add(kind, rate=rate, mailbox=employee.mailbox, path="/events", **options)
            rules[name].append(rule)
    # The worker's first token request is throttled, its next one cut off (MSAL itself holds
    # back requests for the Retry-After, so a short one keeps the test fast).
    rules["token"] = [
        faults.add("429", count=1, path=TOKEN_PATH, retry_after="1"),
        faults.add("drop", count=1, path=TOKEN_PATH),
    ]
    return rules


async def test_faults_from_graph_end_in_the_expected_calendars(
    make_world: MakeWorld,
) -> None:
    seed = int(os.environ.get(SEED_ENV) or random.SystemRandom().randrange(2**32))
    print(f"fault test seed {seed} (rerun with {SEED_ENV}={seed})")
    rng = random.Random(seed)
    async with running_world(
        make_world, mailboxes=MAILBOXES, seed=seed, worker=WORKER, graph_timeout=GRAPH_TIMEOUT
    ) as world:
        script = make_script(rng, world.employees, APPOINTMENTS)
        faults = world.sandbox.control.faults
        rules = _inject(faults, world.employees)
        started = time.monotonic()
        for phase in script.phases:
            await world.send_all(phase)
        await world.drain(within=DRAIN_TIMEOUT, context=f"seed {seed}: ")
        faults.clear()
        fired = {name: sum(rule.fired for rule in kind) for name, kind in rules.items()}
        retried = await world.retried_attempts()
        print(
            f"{world.sent} webhooks, drained in {time.monotonic() - started:.1f} s; faults "
            f"{fired}; {world.sandbox.control.throttle.rejected} concurrency/rate 429s; "
            f"{retried} retried attempts"
        )
        assert all(fired.values()), f"seed {seed}: a kind of fault never fired: {fired}"
        problems = await calendar_problems(world, script)
        assert not problems, f"seed {seed}: {len(problems)} problems:\n" + "\n".join(problems)


async def test_a_create_carried_out_after_its_retry_leaves_no_event(
    make_world: MakeWorld,
) -> None:
    """The create times out at calbridge but Graph carries it out two seconds later; meanwhile
    the appointment is cancelled, and the cancellation's lookup by tag finds nothing yet, so the
    row becomes a tombstone. The mailbox's next delta run (what Graph's notification of the late
    create queues) knows the event by its transactionId and removes it."""
    worker = WorkerSettings(poll_seconds=0.02, backoff_base_seconds=0.05, max_attempts=5)
    async with running_world(
        make_world, mailboxes=1, worker=worker, graph_timeout=GRAPH_TIMEOUT
    ) as world:
        script = make_script(random.Random(1), world.employees, 1)
        [created] = script.phases[0]
        mailbox = world.employees[0].mailbox
        slow = world.sandbox.control.faults.add(
            "latency", count=1, seconds=GRAPH_TIMEOUT + 2.0, mailbox=mailbox, path="/events"
        )
        await world.send(created)
        await eventually(
            lambda: slow.fired > 0, within=20, every=0.001, failure="the create did not reach Graph"
        )
        canceled = Delivery("appointment.canceled", {**created.payload, "canceled": True})
        await world.send(canceled)
        await world.drain(within=DRAIN_TIMEOUT)
        await eventually(
            lambda: world.graph_requests_in_flight() == 0,
            within=20,
            every=0.001,
            failure="the create was not done",
        )
        assert len(world.sandbox.control.events(mailbox)) == 1  # the late create landed

        async with world.database.session() as session:
            connection_id = await session.scalar(select(Connection.id))
        assert connection_id is not None
        graph = GraphClients(world.settings)
        try:
            outcome = await sync_mailbox_impl(
                database=world.database,
                settings=world.settings,
                secret_box=SecretBox([SECRET_KEY.encode()]),
                graph=graph,
                connection_id=connection_id,
                mailbox=mailbox,
            )
        finally:
            await graph.aclose()
        assert outcome.strays_removed == 1
        final = Script(phases=[], final={created.payload["id"]: canceled.payload})
        problems = await calendar_problems(world, final)
        assert not problems, "\n".join(problems)
