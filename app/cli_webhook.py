"""`calbridge webhook send`: one bookingtime test webhook, signed with a connection's secret as
bookingtime signs it (Standard Webhooks), sent to a running calbridge; prints its answer."""

from __future__ import annotations

import asyncio
import copy
import json
import secrets
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote
from zoneinfo import ZoneInfo

import httpx
import typer
from standardwebhooks.webhooks import EmptyWebhookSecretError, Webhook

from app.bookingtime.schemas import EXAMPLE_EVENT
from app.cli_setup import checked_settings, command_group, fail, first_line
from app.config import Settings

webhook_cli = command_group(help="Test webhooks, signed and sent as bookingtime sends them.")

DEFAULT_URL = "http://127.0.0.1:8000"
SEND_TIMEOUT = 30.0
_EXAMPLE_EMPLOYEE: str = EXAMPLE_EVENT["data"]["appointment"]["bookingResourceList"][0]["id"]


class Sample(StrEnum):
    created = "created"
    updated = "updated"
    canceled = "canceled"


def sample_event(
    sample: Sample, *, organization_id: str, appointment_id: str, employee_id: str, now: datetime
) -> dict[str, Any]:
    """The documented example event as `sample`, sent `now`: an hour at 10:00 tomorrow in the
    appointment's time zone, booked with `employee_id`."""
    event = copy.deepcopy(EXAMPLE_EVENT)
    appointment = event["data"]["appointment"]
    zone = ZoneInfo(appointment["timeZone"])
    start = (now.astimezone(zone) + timedelta(days=1)).replace(
        hour=10, minute=0, second=0, microsecond=0
    )
    event["type"] = f"appointment.{sample.value}"
    event["timestamp"] = now.isoformat()
    event["data"]["organizationId"] = organization_id
    appointment.update(
        id=appointment_id,
        start=start.isoformat(),
        end=(start + timedelta(hours=1)).isoformat(),
        canceled=sample is Sample.canceled,
    )
    appointment["bookingResourceList"][0]["id"] = employee_id
    if sample is Sample.updated:
        appointment["notes"] = "Bitte Unterlagen und Ausweis mitbringen"
    return event


def signed_headers(secret: str, body: str, *, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of `body`: a fresh webhook-id, `now`, the v1 signature."""
    webhook_id = f"msg_{secrets.token_hex(12)}"
    try:
        signature = Webhook(secret).sign(webhook_id, now, body)
    except (EmptyWebhookSecretError, ValueError):
        raise fail(
            "the webhook secret is not a Standard Webhooks secret (whsec_ and base64); copy it "
            "from the connection's PUT answer"
        ) from None
    return {
        "content-type": "application/json",
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
    }


@webhook_cli.command("send")
def send(
    organization_id: Annotated[
        str,
        typer.Argument(
            metavar="ORGANIZATION_ID", help="the bookingtime organisation id of the connection"
        ),
    ],
    file: Annotated[
        Path | None,
        typer.Option(help="send this JSON file as it is (instead of a sample)", dir_okay=False),
    ] = None,
    sample: Annotated[
        Sample | None, typer.Option(help="send a sample appointment event [default: created]")
    ] = None,
    appointment_id: Annotated[
        str | None,
        typer.Option(help="the sample's appointment id (to update or cancel a sent one)"),
    ] = None,
    employee: Annotated[
        str | None,
        typer.Option(
            help="booking resource id in the sample (a mapped employee's id reaches a calendar)"
        ),
    ] = None,
    url: Annotated[str, typer.Option(help="where calbridge runs")] = DEFAULT_URL,
    secret: Annotated[
        str | None,
        typer.Option(help="the connection's whsec_ webhook secret; default: from the database"),
    ] = None,
) -> None:
    """Sign one bookingtime webhook with the connection's secret, send it, print the answer.

    Exit 0 when calbridge answers 2xx, 1 when it refuses, 2 when a setting or option is wrong.
    Without --secret, reads the secret from the database: CALBRIDGE_DATABASE_URL and
    CALBRIDGE_SECRET_KEY must be the server's.
    """
    if file is not None and (sample or appointment_id or employee):
        raise fail(
            "--file is sent as it is: --sample, --appointment-id and --employee shape a sample"
        )
    endpoint = _endpoint(url, organization_id)
    now = datetime.now(UTC)
    if file is not None:
        body = _read(file)
        what = str(file)
    else:
        appointment_id = appointment_id or f"ed{secrets.token_hex(15)}"
        event = sample_event(
            sample or Sample.created,
            organization_id=organization_id,
            appointment_id=appointment_id,
            employee_id=employee or _EXAMPLE_EMPLOYEE,
            now=now,
        )
        body = json.dumps(event, ensure_ascii=False)
        what = f"{event['type']} for appointment {appointment_id}"
    if secret is None:
        secret = _stored_secret(organization_id)
    headers = signed_headers(secret, body, now=now)
    try:
        response = httpx.post(
            endpoint, content=body.encode(), headers=headers, timeout=SEND_TIMEOUT
        )
    except httpx.HTTPError as exc:
        raise fail(
            f"cannot reach calbridge at {url}: {first_line(exc) or type(exc).__name__} "
            "(is `calbridge serve` running there? choose the address with --url)"
        ) from None
    typer.echo(f"sent {what} as webhook {headers['webhook-id']} to {endpoint}")
    answer = " ".join(response.text.split())
    typer.echo(
        f"{response.status_code} {response.reason_phrase}" + (f": {answer}" if answer else "")
    )
    raise typer.Exit(code=0 if response.is_success else 1)


def _endpoint(url: str, organization_id: str) -> str:
    try:
        base = httpx.URL(url)
    except httpx.InvalidURL:
        base = None
    if base is None or base.scheme not in ("http", "https") or not base.host:
        raise fail(
            f"--url {url!r} is not an absolute http(s) URL (calbridge's, such as {DEFAULT_URL})"
        )
    return f"{url.rstrip('/')}/webhooks/bookingtime/{quote(organization_id, safe='')}"


def _read(file: Path) -> str:
    try:
        return file.read_bytes().decode("utf-8")
    except OSError as exc:
        raise fail(f"cannot read --file {file}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise fail(f"--file {file} is not UTF-8 text (bookingtime sends UTF-8 JSON)") from None


def _stored_secret(organization_id: str) -> str:
    """The connection's current webhook secret, from the database the server uses."""
    from app.crypto import SecretKeyError, key_file_for, load_secret_box

    settings = checked_settings()
    database_file = settings.sqlite_file
    if database_file is not None:
        # Neither an empty database nor a new development key is made for a lookup.
        if not database_file.exists():
            raise fail(
                f"no database at {database_file.absolute()}: point CALBRIDGE_DATABASE_URL at "
                "the one `calbridge serve` uses, or give --secret"
            )
        has_key = settings.secret_key is not None and settings.secret_key.get_secret_value()
        if not has_key and not key_file_for(database_file).exists():
            raise fail(
                f"CALBRIDGE_SECRET_KEY is not set and {key_file_for(database_file)} does not "
                "exist: set CALBRIDGE_SECRET_KEY as the server has it, or give --secret"
            )
    encrypted = asyncio.run(_encrypted_secret(settings, organization_id))
    try:
        return load_secret_box(settings).decrypt(encrypted)
    except SecretKeyError as exc:
        raise fail(f"{exc} (or give --secret)") from None


async def _encrypted_secret(settings: Settings, organization_id: str) -> str:
    from sqlalchemy.exc import SQLAlchemyError

    from app.connections.service import ConnectionNotFoundError, get_connection
    from app.db import Database

    database = Database(settings.database_url)
    try:
        async with database.session_scope() as session:
            connection = await get_connection(session, organization_id=organization_id)
            return connection.webhook_secret_encrypted
    except ConnectionNotFoundError:
        raise fail(
            f"no connection for organisation {organization_id!r} in the database of "
            "CALBRIDGE_DATABASE_URL: create it first (PUT /api/v1/connections/…), or give --secret"
        ) from None
    except (SQLAlchemyError, OSError) as exc:
        raise fail(
            f"cannot read the connection ({type(exc).__name__}: {first_line(exc)}); check "
            "CALBRIDGE_DATABASE_URL and that the database is reachable, or give --secret"
        ) from None
    finally:
        await database.dispose()
