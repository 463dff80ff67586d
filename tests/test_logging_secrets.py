"""Known secrets, tokens, clientStates and customer contact details fed through every path of a
running calbridge (real uvicorn, in-process worker, the Graph sandbox over HTTPS) while it logs
at DEBUG in JSON; then the captured output is grepped for each of them and its lines checked for
their request or job id, organisation and employee. SQLite and PostgreSQL."""

from __future__ import annotations

import base64
import io
import json
import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from sqlalchemy import select
from standardwebhooks import Webhook

from app import logs
from app.config import WorkerSettings
from app.models import Job, Subscription
from app.sandbox import ThrottleLimits
from tests.conftest import ADMIN_TOKEN, SECRET_KEY
from tests.helpers import eventually
from tests.sync.samples import appointment
from tests.test_logs import saved_logging
from tests.world import MakeWorld
from tests.world import World as BaseWorld

ORG = "f6LogSecrets00000000000000000000"
ORG_REJECTED = "f6LogRejected0000000000000000000"
MAX_ID = "brLogMax000000000000000000000000"
MAILBOX = "max@contoso.example"
APPOINTMENT = "edLogSecrets00000000000000000001"
APPOINTMENT_REJECTED = "edLogRejected0000000000000000001"


def _whsec(seed: bytes) -> str:
    return "whsec_" + base64.b64encode(seed.ljust(32, b"-")).decode()


WEBHOOK_SECRET = _whsec(b"log-test-webhook-secret-one")
NEW_WEBHOOK_SECRET = _whsec(b"log-test-webhook-secret-two")
REJECTED_ORG_WEBHOOK_SECRET = _whsec(b"log-test-webhook-secret-three")
FORGED_WEBHOOK_SECRET = _whsec(b"log-test-webhook-secret-forged")
# Shaped like no credential the redaction knows: only not logging them keeps them out.
WRONG_CLIENT_SECRET = "plainWrongClientSecretValue0123456789Zq"
REJECTED_CLIENT_SECRET = "plainRejectedClientSecret9876543210Xw"
WRONG_ADMIN_TOKEN = "notTheAdminToken7Hq2Lx9Wv4"
WRONG_CLIENT_STATE = "guessedClientState5Tn8Rb1"
CUSTOMER = {
    "id": "d3LogCustomer0000000000000000001",
    "gender": "FEMALE",
    "firstName": "Wilhelmina",
    "lastName": "Quasthoff-Zander",
    "email": "w.quasthoff@kundin.example",
    "mobile": "+491709876543",
    "phone": "+494012345678",
}
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@dataclass
class World(BaseWorld):
    """The shared world served on a real port, its worker running, logging JSON to `output`."""

    output: io.StringIO = field(default_factory=io.StringIO)

    @property
    def user_id(self) -> str:
        return self.users[MAILBOX]

    def connection_body(self, **overrides: Any) -> dict[str, Any]:
        return {
            "tenant": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.secret,
            "webhook_secret": WEBHOOK_SECRET,
            "locale": "en",
            **overrides,
        }

    async def deliver(
        self,
        organization_id: str,
        appointment_id: str,
        *,
        secret: str,
        request_id: str | None = None,
    ) -> httpx.Response:
        start = (datetime.now(UTC) + timedelta(days=2)).replace(microsecond=0)
        payload = appointment(
            id=appointment_id,
            name="Beratung",
            start=start.isoformat(),
            end=(start + timedelta(hours=1)).isoformat(),
            timeZone="Europe/Berlin",
            customer=CUSTOMER,
            notes=f"Rückruf unter {CUSTOMER['phone']}",
            bookingResourceList=[{"id": MAX_ID, "type": "EMPLOYEE", "name": "Max"}],
            organizationId=organization_id,
        )
        body = json.dumps(
            {
                "type": "appointment.created",
                "timestamp": datetime.now(UTC).isoformat(),
                "data": {"organizationId": organization_id, "appointment": payload},
            }
        )
        webhook_id = f"msg_{appointment_id}_{secret[-6:]}"
        headers = {
            "webhook-id": webhook_id,
            "webhook-timestamp": str(int(time.time())),
            "webhook-signature": Webhook(secret).sign(webhook_id, datetime.now(UTC), body),
            "content-type": "application/json",
        }
        if request_id:
            headers["X-Request-ID"] = request_id
        return await self.http.post(
            f"/webhooks/bookingtime/{organization_id}", content=body, headers=headers
        )

    async def jobs(self) -> list[Job]:
        async with self.database.session() as session:
            return list(await session.scalars(select(Job).order_by(Job.id)))

    async def settle(self) -> list[Job]:
        """Until nothing runs and nothing is due (the periodic ticks wait minutes ahead)."""

        async def quiet() -> list[Job] | None:
            jobs = await self.jobs()
            soon = datetime.now(UTC) + timedelta(seconds=2)
            busy = [
                j
                for j in jobs
                if j.state == "running" or (j.state == "pending" and _aware(j.run_at) < soon)
            ]
            return None if busy else jobs

        return await eventually(quiet)

    def lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.output.getvalue().splitlines()]


def _aware(value: datetime) -> datetime:
    return value if value.tzinfo else value.replace(tzinfo=UTC)


@pytest.fixture
async def world(make_world: MakeWorld) -> AsyncIterator[World]:
    output = io.StringIO()
    with saved_logging():
        async with make_world(
            World,
            seed=13,
            limits=ThrottleLimits(concurrency=4, requests_per_window=10_000),
            mailboxes=[MAILBOX],
            serve={"log_config": None, "log_level": "debug", "access_log": True},
            client={"headers": {}, "timeout": 30},
            run_worker=True,
            before_app=lambda settings: logs.configure_logging(settings, stream=output),
            log_format="json",
            log_level="DEBUG",
            worker=WorkerSettings(poll_seconds=0.05, backoff_base_seconds=0.05),
        ) as built:
            built.output = output
            yield built


async def _client_state(world: World) -> str:
    async def stored() -> str | None:
        async with world.database.session() as session:
            row = await session.scalar(select(Subscription).where(Subscription.mailbox == MAILBOX))
        if row is None or not row.client_state_encrypted or not row.graph_subscription_id:
            return None
        return world.secret_box.decrypt(row.client_state_encrypted)

    return await eventually(stored)


async def _subscription_id(world: World) -> str:
    async with world.database.session() as session:
        row = await session.scalar(select(Subscription).where(Subscription.mailbox == MAILBOX))
    assert row is not None and row.graph_subscription_id
    return row.graph_subscription_id


def _notification(sub_id: str, client_state: str, tenant_id: str, user: str) -> dict[str, Any]:
    return {
        "subscriptionId": sub_id,
        "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
        "clientState": client_state,
        "changeType": "updated",
        "resource": f"Users/{user}/Events/AAMkAG=",
        "tenantId": tenant_id,
        "resourceData": {"@odata.type": "#Microsoft.Graph.Event", "id": "AAMk="},
    }


async def test_no_secret_token_client_state_or_contact_detail_is_ever_logged(world: World) -> None:
    client = world.http
    url = f"/api/v1/connections/{ORG}"

    # Connections: created with known secrets; admin calls with the right and a wrong token.
    created = await client.put(
        url, json=world.connection_body(), headers={**ADMIN, "X-Request-ID": "rid-create"}
    )
    assert created.status_code == 201, created.text
    assert created.headers["x-request-id"] == "rid-create"
    refused = await client.get(
        "/api/v1/connections",
        headers={"Authorization": f"Bearer {WRONG_ADMIN_TOKEN}", "X-Request-ID": "rid-admin"},
    )
    assert refused.status_code == 401
    assert (await client.get("/api/v1/connections", headers=ADMIN)).status_code == 200
    mapped = await client.put(f"{url}/employees/{MAX_ID}", json={"mailbox": MAILBOX}, headers=ADMIN)
    assert mapped.status_code == 201, mapped.text

    # A signed webhook with the customer's contact details, and a forged one.
    accepted = await world.deliver(ORG, APPOINTMENT, secret=WEBHOOK_SECRET)
    assert accepted.status_code == 202, accepted.text
    forged = await world.deliver(
        ORG, APPOINTMENT, secret=FORGED_WEBHOOK_SECRET, request_id="rid-forged"
    )
    assert forged.status_code == 401
    assert forged.headers["x-request-id"] == "rid-forged"

    # The worker writes it to Outlook; the subscription (its handshake through this server)
    # gives the mailbox a clientState.
    async def written() -> list[dict[str, Any]]:
        return world.sandbox.control.events(MAILBOX)

    [event] = await eventually(written)
    assert CUSTOMER["email"] in json.dumps(event)  # the contact did travel, to Outlook only
    client_state = await _client_state(world)
    sub_id = await _subscription_id(world)
    await world.settle()

    # Graph notifications: a valid clientState and a guessed one; a lifecycle event.
    user_id = world.user_id
    batch = {
        "value": [
            _notification(sub_id, client_state, world.tenant_id, user_id),
            _notification(sub_id, WRONG_CLIENT_STATE, world.tenant_id, user_id),
        ]
    }
    notified = await client.post(
        "/webhooks/graph/notifications", json=batch, headers={"X-Request-ID": "rid-notify"}
    )
    assert notified.status_code == 202
    lifecycle = {
        "value": [
            {
                "subscriptionId": sub_id,
                "subscriptionExpirationDateTime": "2030-01-01T00:00:00Z",
                "tenantId": world.tenant_id,
                "clientState": client_state,
                "lifecycleEvent": "missed",
            }
        ]
    }
    assert (await client.post("/webhooks/graph/lifecycle", json=lifecycle)).status_code == 202

    # Rotation: a working client secret and a new webhook secret; then a refused secret.
    new_secret = world.sandbox.control.add_secret(
        world.client_id, expires_at=datetime.now(UTC) + timedelta(days=180)
    )
    rotated = await client.put(
        url,
        json=world.connection_body(client_secret=new_secret, webhook_secret=NEW_WEBHOOK_SECRET),
        headers=ADMIN,
    )
    assert rotated.status_code == 200, rotated.text
    rejected = await client.put(
        url,
        json=world.connection_body(client_secret=WRONG_CLIENT_SECRET),
        headers={**ADMIN, "X-Request-ID": "rid-rotate-rejected"},
    )
    assert rejected.status_code == 422, rejected.text
    verified = await client.post(f"{url}/verify", json={"mailbox": MAILBOX}, headers=ADMIN)
    assert verified.status_code == 200, verified.text

    # A connection whose client secret Entra rejects (creation does not check it): the mailbox
    # check, a webhook and the sync job that fails for good.
    other = f"/api/v1/connections/{ORG_REJECTED}"
    body = world.connection_body(
        client_secret=REJECTED_CLIENT_SECRET, webhook_secret=REJECTED_ORG_WEBHOOK_SECRET
    )
    assert (await client.put(other, json=body, headers=ADMIN)).status_code == 201
    assert (
        await client.put(f"{other}/employees/{MAX_ID}", json={"mailbox": MAILBOX}, headers=ADMIN)
    ).status_code == 201
    delivered = await world.deliver(
        ORG_REJECTED, APPOINTMENT_REJECTED, secret=REJECTED_ORG_WEBHOOK_SECRET
    )
    assert delivered.status_code == 202, delivered.text
    jobs = await world.settle()
    failed = [j for j in jobs if j.kind == "sync.appointment" and j.state in ("failed", "dead")]
    assert [j.args["appointment_id"] for j in failed] == [APPOINTMENT_REJECTED]

    # --- the grep -------------------------------------------------------------------------
    tokens = list(world.sandbox.runtime.state.tokens)
    assert tokens, "the sandbox issued no access token: the grep would prove nothing"
    known = {
        "client secret": world.secret,
        "rotated client secret": new_secret,
        "refused client secret": WRONG_CLIENT_SECRET,
        "rejected client secret": REJECTED_CLIENT_SECRET,
        "admin token": ADMIN_TOKEN,
        "wrong admin token": WRONG_ADMIN_TOKEN,
        "clientState": client_state,
        "guessed clientState": WRONG_CLIENT_STATE,
        "secret key": SECRET_KEY,
        **{
            f"customer {key}": value
            for key, value in CUSTOMER.items()
            if key not in ("id", "gender")
        },
        **{f"access token {i}": token for i, token in enumerate(tokens)},
    }
    for name, secret in (
        ("webhook secret", WEBHOOK_SECRET),
        ("new webhook secret", NEW_WEBHOOK_SECRET),
        ("rejected org's webhook secret", REJECTED_ORG_WEBHOOK_SECRET),
        ("forged webhook secret", FORGED_WEBHOOK_SECRET),
    ):
        known[name] = secret.removeprefix("whsec_")
    # Parts of a token are as bad as the whole (its signature, its first 24 characters).
    for i, token in enumerate(tokens):
        known[f"access token {i} signature"] = token.rsplit(".", 1)[-1]
    output = world.output.getvalue()
    assert output.count("\n") > 50, output
    leaked = {name: value for name, value in known.items() if value in output}
    assert not leaked, f"in the logs: {sorted(leaked)}"
    folded = output.casefold()
    assert CUSTOMER["email"].casefold() not in folded
    assert CUSTOMER["lastName"].casefold() not in folded

    # --- the lines ------------------------------------------------------------------------
    lines = world.lines()
    assert all({"ts", "level", "logger", "message"} <= set(line) for line in lines)
    loggers = {line["logger"] for line in lines}
    # DEBUG really was on for the libraries that see tokens: MSAL logs each token response
    # (msal.token_cache), and it was checked above for the tokens the sandbox issued.
    assert "msal.token_cache" in loggers, sorted(loggers)
    assert "httpx" in loggers and "uvicorn.access" in loggers
    # No SQL (its parameters are payloads) even at DEBUG.
    assert not any(name.startswith(("sqlalchemy", "aiosqlite", "psycopg")) for name in loggers)

    # calbridge's own access lines (the sandbox's uvicorn logs through the same logger).
    access = [
        line
        for line in lines
        if line["logger"] == "uvicorn.access"
        and re.search(r'"\w+ /(api|webhooks)/', line["message"])
    ]
    assert access and all("request_id" in line for line in access)
    assert any(
        line["request_id"] == "rid-forged" and '"POST /webhooks/bookingtime/' in line["message"]
        for line in access
    )
    [refusal] = [line for line in lines if "refused: invalid_signature" in line["message"]]
    assert refusal["request_id"] == "rid-forged"
    assert refusal["organization_id"] == ORG
    [dropped] = [line for line in lines if line["message"].startswith("graph notifications: dropp")]
    assert dropped["request_id"] == "rid-notify"
    # Redaction masks secrets, not the count after a reason named like one, nor the bracket.
    assert dropped["message"] == "graph notifications: dropped 1 of 2 items (client_state=1)"
    # MSAL's token calls run in a thread: they still carry the request that caused them.
    token_calls = [
        line
        for line in lines
        if line["logger"] == "httpx" and "/oauth2/v2.0/token" in line["message"]
    ]
    assert any(line.get("request_id") == "rid-rotate-rejected" for line in token_calls)

    done = [line for line in lines if line["message"].endswith(": done")]
    assert done and all("job_id" in line and "job_kind" in line for line in done)
    assert not any("request_id" in line for line in done)
    synced = [line for line in done if line["job_kind"] == "sync.appointment"]
    assert synced and all(line["organization_id"] == ORG for line in synced)
    deltas = [line for line in done if line["job_kind"] == "sync.mailbox"]
    assert deltas and all(
        line["organization_id"] == ORG and line["mailbox"] == MAILBOX for line in deltas
    )
    [failure] = [
        line
        for line in lines
        if line["logger"].startswith("app.sync.")
        and line["level"] == "WARNING"
        and line["message"].startswith("sync.appointment ")
    ]
    assert failure["organization_id"] == ORG_REJECTED
    assert failure["employee_id"] == MAX_ID
    assert failure["job_kind"] == "sync.appointment" and "job_id" in failure
