"""`calbridge webhook send` against a real calbridge on loopback: the webhook it signs is accepted
and lands in the inbox; a wrong secret is refused; a misconfiguration is one line, exit 2."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy import select
from typer.testing import CliRunner, Result

from app.cli import cli
from app.config import Settings, get_settings
from app.crypto import SecretBox
from app.db import Database
from app.models import Appointment, Connection, InboxEvent
from tests.bookingtime.helpers import FIXTURES, ORGANIZATION_ID, WEBHOOK_SECRET
from tests.conftest import SECRET_KEY
from tests.servers import serve_app

OTHER_SECRET = "whsec_" + base64.b64encode(b"not-the-connection-secret-32byte").decode()


@pytest.fixture
def cli_env(settings: Settings) -> Iterator[dict[str, str | None]]:
    """The environment the command reads the server's settings from; the process caches its
    settings, so they are read afresh for each test."""
    get_settings.cache_clear()
    yield {
        "CALBRIDGE_DATABASE_URL": settings.database_url,
        "CALBRIDGE_SECRET_KEY": SECRET_KEY,
    }
    get_settings.cache_clear()


@pytest.fixture
async def connection(database: Database, secret_box: SecretBox) -> int:
    async with database.session_scope() as session:
        row = Connection(
            organization_id=ORGANIZATION_ID,
            tenant="contoso.onmicrosoft.com",
            client_id="00000000-0000-0000-0000-000000000001",
            client_secret_encrypted=secret_box.encrypt("x"),
            webhook_secret_encrypted=secret_box.encrypt(WEBHOOK_SECRET),
        )
        session.add(row)
        await session.flush()
        return row.id


@pytest.fixture
async def base_url(app: FastAPI, connection: int) -> AsyncIterator[str]:
    async with serve_app(app, lifespan="off") as port:
        yield f"http://127.0.0.1:{port}"


async def _send(env: dict[str, str | None], *args: str) -> Result:
    # In a thread: the server answers on this test's event loop meanwhile.
    return await asyncio.to_thread(
        CliRunner().invoke, cli, ["webhook", "send", *args], env=env, catch_exceptions=False
    )


def _webhook_id(result: Result) -> str:
    match = re.search(r" as webhook (msg_\w+) to ", result.stdout)
    assert match, result.output
    return match.group(1)


async def _inbox(database: Database, webhook_id: str) -> InboxEvent | None:
    async with database.session() as session:
        found: InboxEvent | None = await session.scalar(
            select(InboxEvent).where(InboxEvent.external_id == webhook_id)
        )
        return found


async def _appointment(database: Database, appointment_id: str) -> Appointment:
    async with database.session() as session:
        found = await session.scalar(
            select(Appointment).where(Appointment.appointment_id == appointment_id)
        )
    assert found is not None
    return found


async def test_a_sample_signed_with_the_stored_secret_is_accepted_and_in_the_inbox(
    base_url: str, cli_env: dict[str, str | None], database: Database, connection: int
) -> None:
    created = await _send(cli_env, ORGANIZATION_ID, "--url", base_url)
    assert created.exit_code == 0, created.output
    sent, answer = created.stdout.splitlines()
    assert f"{base_url}/webhooks/bookingtime/{ORGANIZATION_ID}" in sent
    assert answer.startswith("202 Accepted: ")
    assert json.loads(answer.removeprefix("202 Accepted: "))["status"] == "accepted"
    appointment_id = re.search(r"appointment\.created for appointment (\w+)", sent)
    assert appointment_id, sent

    inbox = await _inbox(database, _webhook_id(created))
    assert inbox is not None
    assert (inbox.connection_id, inbox.event_type) == (connection, "appointment.created")
    assert inbox.subject_id == appointment_id.group(1)
    stored = await _appointment(database, appointment_id.group(1))
    assert stored.connection_id == connection and not stored.canceled
    assert datetime.fromisoformat(stored.payload["start"]) > datetime.now(UTC)

    # The same appointment, canceled: a follow-up event for what was sent before.
    canceled = await _send(
        cli_env,
        ORGANIZATION_ID,
        "--url",
        base_url,
        "--sample",
        "canceled",
        "--appointment-id",
        appointment_id.group(1),
    )
    assert canceled.exit_code == 0, canceled.output
    assert (await _appointment(database, appointment_id.group(1))).canceled


async def test_a_wrong_secret_is_refused_with_401_and_exit_1(
    base_url: str, cli_env: dict[str, str | None], database: Database
) -> None:
    result = await _send(cli_env, ORGANIZATION_ID, "--url", base_url, "--secret", OTHER_SECRET)
    assert result.exit_code == 1, result.output
    answer = result.stdout.splitlines()[1]
    assert answer.startswith("401 Unauthorized: ")
    assert json.loads(answer.removeprefix("401 Unauthorized: "))["code"] == "invalid_signature"
    assert await _inbox(database, _webhook_id(result)) is None


async def test_a_file_is_sent_as_it_is_and_a_refusal_is_printed(
    base_url: str, cli_env: dict[str, str | None], database: Database, tmp_path: Path
) -> None:
    fixture = FIXTURES / "appointment_updated.json"
    result = await _send(
        cli_env,
        ORGANIZATION_ID,
        "--url",
        base_url,
        "--file",
        str(fixture),
        "--secret",
        WEBHOOK_SECRET,
    )
    assert result.exit_code == 0, result.output
    inbox = await _inbox(database, _webhook_id(result))
    assert inbox is not None and inbox.event_type == "appointment.updated"
    expected = json.loads(fixture.read_text(encoding="utf-8"))["data"]["appointment"]
    assert (await _appointment(database, expected["id"])).payload == expected

    invalid = tmp_path / "invalid.json"
    invalid.write_text('{"type": "appointment.created", "timestamp": "now"}')
    refused = await _send(cli_env, ORGANIZATION_ID, "--url", base_url, "--file", str(invalid))
    assert refused.exit_code == 1, refused.output
    answer = refused.stdout.splitlines()[1]
    assert answer.startswith("422 Unprocessable")
    assert '"code":"validation_failed"' in answer.replace(" ", "")
    assert await _inbox(database, _webhook_id(refused)) is None


def _one_line(result: Result) -> str:
    assert result.exit_code == 2, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("calbridge: "), result.stderr
    assert result.stdout == ""  # nothing was sent
    return lines[0]


async def test_an_unknown_organisation_without_a_secret_is_one_line(
    base_url: str, cli_env: dict[str, str | None], database: Database
) -> None:
    line = _one_line(await _send(cli_env, "f6unknown", "--url", base_url))
    assert "'f6unknown'" in line and "CALBRIDGE_DATABASE_URL" in line and "--secret" in line
    async with database.session() as session:
        assert await session.scalar(select(InboxEvent)) is None


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["--url", "127.0.0.1:8000"], "--url"),
        (["--url", "http://127.0.0.1:1"], "cannot reach calbridge at http://127.0.0.1:1"),
        (["--file", "{tmp}/missing.json"], "missing.json"),
        (["--file", "{tmp}/event.json", "--sample", "created"], "--file is sent as it is"),
        (["--secret", "whsec_"], "whsec_"),
    ],
)
def test_a_bad_option_is_one_line(args: list[str], expected: str, tmp_path: Path) -> None:
    (tmp_path / "event.json").write_text("{}")
    args = [arg.format(tmp=tmp_path) for arg in args]
    result = CliRunner().invoke(
        cli, ["webhook", "send", ORGANIZATION_ID, "--secret", WEBHOOK_SECRET, *args]
    )
    assert expected in _one_line(result)


def test_a_missing_database_is_one_line_and_stays_missing(tmp_path: Path) -> None:
    database = tmp_path / "calbridge.db"
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(
            cli,
            ["webhook", "send", ORGANIZATION_ID],
            env={"CALBRIDGE_DATABASE_URL": f"sqlite:///{database}", "CALBRIDGE_SECRET_KEY": None},
        )
    finally:
        get_settings.cache_clear()
    line = _one_line(result)
    assert str(database) in line and "--secret" in line
    assert list(tmp_path.iterdir()) == []  # neither a database nor a key file was made
