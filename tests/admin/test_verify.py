"""Connection verify and the employee PUT's mailbox check against the sandbox over HTTPS."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from app.connections.tasks import CHECK_MAILBOX_JOB, check_mailbox_job
from app.queue.errors import RetryLater
from app.queue.retry import RetryStrategy
from app.tasks import build_registry
from tests.admin.conftest import ORG, raw_rows
from tests.conftest import ADMIN_TOKEN
from tests.helpers import assert_problem, job_context
from tests.world import MakeWorld
from tests.world import World as BaseWorld

MAX = "max@contoso.example"
TYPO = "mxa@contoso.example"
EMPLOYEE = "brAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
VERIFY = f"/api/v1/connections/{ORG}/verify"
EMPLOYEE_URL = f"/api/v1/connections/{ORG}/employees/{EMPLOYEE}"
HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

GERMAN_INVALID = (
    f"Der Benutzer {TYPO} ist ungültig – entweder existiert er nicht in der Organisation oder die "
    "E-Mail-Adresse wurde falsch eingegeben."
)
ENGLISH_SECRET_INVALID = (
    "The app registration's client secret is invalid. Enter the value (not the ID) of a valid "
    "secret in the connection."
)


@dataclass
class World(BaseWorld):
    """The shared world, driven through the admin API in-process."""

    async def connect(self, **overrides: Any) -> None:
        body = {
            "tenant": self.tenant_id,
            "client_id": self.client_id,
            "client_secret": self.secret,
            "locale": "de",
            **overrides,
        }
        response = await self.http.put(f"/api/v1/connections/{ORG}", json=body, headers=HEADERS)
        assert response.status_code in (200, 201), response.text

    async def verify(self, body: Any = None, **headers: str) -> dict[str, Any]:
        response = await self.http.post(VERIFY, json=body, headers={**HEADERS, **headers})
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result


@pytest.fixture
async def world(make_world: MakeWorld) -> AsyncIterator[World]:
    async with make_world(World, seed=7, mailboxes=[MAX]) as built:
        yield built


def _codes(result: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    return [(c["name"], c["ok"], c["code"]) for c in result["checks"]]


async def test_verify_good_credentials_and_mailbox(world: World) -> None:
    await world.connect()
    result = await world.verify({"mailbox": "Max@Contoso.example"})
    assert result["ok"] is True
    assert _codes(result) == [("token", True, "token_acquired"), ("mailbox", True, "mailbox_ok")]
    assert all(c["message"] for c in result["checks"])

    # Without a body only the token is checked.
    only_token = await world.verify()
    assert _codes(only_token) == [("token", True, "token_acquired")]


async def test_verify_wrong_secret(world: World) -> None:
    await world.connect(client_secret="Xy48Q~not-the-right-secret-0123456789ab", locale="en")
    result = await world.verify({"mailbox": MAX})
    assert result["ok"] is False
    assert _codes(result) == [("token", False, "secret_invalid"), ("mailbox", None, "skipped")]
    assert result["checks"][0]["message"] == ENGLISH_SECRET_INVALID
    assert result["checks"][1]["message"] == "Not checked because an earlier check failed."


async def test_verify_unknown_tenant(world: World) -> None:
    unknown = str(uuid.uuid4())
    await world.connect(tenant=unknown)
    result = await world.verify({"mailbox": MAX})
    assert _codes(result) == [("token", False, "tenant_not_found"), ("mailbox", None, "skipped")]
    assert unknown in result["checks"][0]["message"]


async def test_verify_consent_missing(world: World) -> None:
    world.sandbox.control.set_consent(world.client_id, False)
    await world.connect()
    result = await world.verify({"mailbox": MAX}, **{"Accept-Language": "en-US,en;q=0.9"})
    assert _codes(result) == [
        ("token", True, "token_acquired"),
        ("mailbox", False, "consent_missing"),
    ]
    assert "Calendars.ReadWrite" in result["checks"][1]["message"]
    assert result["checks"][1]["message"].startswith("The app lacks")


async def test_verify_mistyped_mailbox_in_german(world: World) -> None:
    await world.connect()
    result = await world.verify({"mailbox": TYPO})
    assert result["ok"] is False
    assert _codes(result) == [
        ("token", True, "token_acquired"),
        ("mailbox", False, "mailbox_invalid"),
    ]
    assert result["checks"][1]["message"] == GERMAN_INVALID


async def test_verify_policy_blocked_mailbox(world: World) -> None:
    world.sandbox.control.block(world.client_id, MAX)
    await world.connect()
    result = await world.verify({"mailbox": MAX})
    assert _codes(result)[1] == ("mailbox", False, "access_policy_blocked")
    assert MAX in result["checks"][1]["message"]


async def test_verify_graph_unavailable(world: World) -> None:
    await world.connect()
    world.sandbox.control.faults.add("503", path=r"/calendar$")
    result = await world.verify({"mailbox": MAX})
    assert _codes(result) == [
        ("token", True, "token_acquired"),
        ("mailbox", False, "graph_unavailable"),
    ]


async def test_verify_unknown_connection_is_404(world: World) -> None:
    response = await world.http.post(VERIFY, json={"mailbox": MAX}, headers=HEADERS)
    assert_problem(response, 404, "connection_not_found")


async def test_employee_put_with_a_good_mailbox(world: World) -> None:
    await world.connect()
    response = await world.http.put(EMPLOYEE_URL, json={"mailbox": MAX}, headers=HEADERS)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["mailbox_check"]["ok"] is True
    assert body["mailbox_check"]["code"] == "mailbox_ok"
    assert body["last_error_code"] is None and body["last_error_message"] is None


async def test_employee_put_with_a_mistyped_mailbox(world: World) -> None:
    await world.connect()
    response = await world.http.put(EMPLOYEE_URL, json={"mailbox": TYPO}, headers=HEADERS)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["mailbox_check"] == {
        "ok": False,
        "code": "mailbox_invalid",
        "message": GERMAN_INVALID,
    }
    assert body["last_error_code"] == "mailbox_invalid"
    assert body["last_error_message"] == GERMAN_INVALID
    assert body["last_error_at"] is not None
    [row] = await raw_rows(world.database, "SELECT last_error_code FROM employee")
    assert row["last_error_code"] == "mailbox_invalid"

    # Corrected: the status is clean again.
    fixed = await world.http.put(EMPLOYEE_URL, json={"mailbox": MAX}, headers=HEADERS)
    assert fixed.status_code == 200
    assert fixed.json()["mailbox_check"]["ok"] is True
    assert fixed.json()["last_error_code"] is None


async def test_employee_put_while_graph_faults_is_checked_in_the_background(
    world: World,
) -> None:
    await world.connect()
    world.sandbox.control.faults.add("503", path=r"/calendar$")
    response = await world.http.put(EMPLOYEE_URL, json={"mailbox": TYPO}, headers=HEADERS)
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["mailbox_check"]["ok"] is None
    assert body["mailbox_check"]["code"] == "check_pending"
    assert body["last_error_code"] is None
    # An unanswered check does not hold back the backfill: its jobs retry on their own.
    assert body["backfill_queued"] is True
    jobs = await raw_rows(world.database, "SELECT * FROM job ORDER BY id")
    # A mapping not (yet) refused also gets its change-notification subscription set up.
    assert sorted(j["kind"] for j in jobs) == [
        CHECK_MAILBOX_JOB,
        "subscription.ensure",
        "sync.resync",
    ]
    [job] = [j for j in jobs if j["kind"] == CHECK_MAILBOX_JOB]

    # The background job, still faulting: it raises, so the queue retries it.
    args = {"employee_id": (await raw_rows(world.database, "SELECT id FROM employee"))[0]["id"]}
    args["mailbox"] = TYPO
    context = job_context(world, CHECK_MAILBOX_JOB, args, job_id=job["id"], max_attempts=5)
    # The process's Graph clients and secret box, as app.tasks.build_registry binds them.
    services = {"graph": world.app.state.graph, "secret_box": world.app.state.secret_box}
    handler = build_registry(world.settings, **services).get(CHECK_MAILBOX_JOB)
    assert handler is not None
    with pytest.raises(RetryLater) as pending:
        await handler.handler(context)
    decision = RetryStrategy().decide(
        pending.value, attempt=1, max_attempts=5, now=datetime.now(UTC)
    )
    assert decision.outcome == "retry"

    # Graph back: the job records the verdict.
    world.sandbox.control.faults.clear()
    await check_mailbox_job(context, **services)
    [row] = await raw_rows(
        world.database, "SELECT last_error_code, last_error_message FROM employee"
    )
    assert row["last_error_code"] == "mailbox_invalid"
    assert row["last_error_message"] == GERMAN_INVALID
