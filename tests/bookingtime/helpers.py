"""Helpers for the bookingtime intake tests: sample payloads, signed deliveries, stored rows."""

from __future__ import annotations

import base64
import copy
import hashlib
import hmac
import itertools
import json
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import func, select
from standardwebhooks import Webhook

from app.db import Database
from app.models import Appointment, InboxEvent, Job

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "bookingtime"
ORGANIZATION_ID = "f6Kq3ZbW8nTx2LmR5vYc9HdJ4pGs7aEu"
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"calbridge-test-webhook-secret-32").decode()
URL = f"/webhooks/bookingtime/{ORGANIZATION_ID}"

_ids = itertools.count(1)


def sample(name: str) -> dict[str, Any]:
    """A sample payload from tests/fixtures/bookingtime (a fresh copy)."""
    return copy.deepcopy(json.loads((FIXTURES / f"{name}.json").read_text(encoding="utf-8")))


def new_webhook_id() -> str:
    return f"msg_test{next(_ids):06d}"


def sign(
    body: bytes,
    *,
    webhook_id: str | None = None,
    at: datetime | None = None,
    secret: str = WEBHOOK_SECRET,
) -> dict[str, str]:
    """Standard Webhooks headers for `body`, signed with the reference library."""
    webhook_id = webhook_id or new_webhook_id()
    at = at or datetime.now(UTC)
    signature = Webhook(secret).sign(webhook_id, at, body.decode())
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": signature,
        "content-type": "application/json",
    }


def sign_bytes(body: bytes, *, webhook_id: str | None = None) -> dict[str, str]:
    """Headers for a body the library cannot sign (not UTF-8): the HMAC of the spec by hand."""
    webhook_id = webhook_id or new_webhook_id()
    timestamp = str(int(datetime.now(UTC).timestamp()))
    key = base64.b64decode(WEBHOOK_SECRET.removeprefix("whsec_"))
    digest = hmac.new(key, f"{webhook_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": timestamp,
        "webhook-signature": "v1," + base64.b64encode(digest).decode(),
    }


def encode(document: Any) -> bytes:
    return json.dumps(document, ensure_ascii=False).encode()


@dataclass
class Sender:
    client: httpx.AsyncClient

    async def send(
        self,
        document: Any,
        *,
        webhook_id: str | None = None,
        url: str = URL,
        at: datetime | None = None,
    ) -> httpx.Response:
        body = document if isinstance(document, bytes) else encode(document)
        headers = sign(body, webhook_id=webhook_id, at=at)
        return await self.client.post(url, content=body, headers=headers)


@dataclass
class Stored:
    inbox: list[InboxEvent]
    appointments: list[Appointment]
    jobs: list[Job]

    @property
    def counts(self) -> tuple[int, int, int]:
        return len(self.inbox), len(self.appointments), len(self.jobs)


async def stored(database: Database) -> Stored:
    """Everything the intake writes, read back from the database."""
    async with database.session() as session:
        inbox = list(await session.scalars(select(InboxEvent).order_by(InboxEvent.id)))
        appointments = list(await session.scalars(select(Appointment).order_by(Appointment.id)))
        jobs = list(await session.scalars(select(Job).order_by(Job.id)))
    return Stored(inbox, appointments, jobs)


async def count_rows(database: Database) -> tuple[int, int, int]:
    async with database.session() as session:
        counts = tuple(
            [
                await session.scalar(select(func.count()).select_from(model)) or 0
                for model in (InboxEvent, Appointment, Job)
            ]
        )
    return counts  # type: ignore[return-value]
