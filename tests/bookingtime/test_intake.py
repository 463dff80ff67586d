"""`POST /webhooks/bookingtime/{organization_id}`: every answer, and what each one stores."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, func, select, update

from app.crypto import SecretBox
from app.db import Database
from app.models import Connection, InboxEvent
from tests.bookingtime.helpers import (
    ORGANIZATION_ID,
    URL,
    Sender,
    count_rows,
    encode,
    sample,
    sign,
    sign_bytes,
    stored,
)
from tests.helpers import assert_problem

NOTHING = (0, 0, 0)


# --- accepted ---------------------------------------------------------------------------------


async def test_new_event_is_stored_and_queued(
    sender: Sender, database: Database, connection_id: int
) -> None:
    event = sample("appointment_created")
    response = await sender.send(event, webhook_id="msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "accepted"
    assert body["coalesced"] is False
    rows = await stored(database)
    assert rows.counts == (1, 1, 1)

    inbox = rows.inbox[0]
    assert body["inbox_event_id"] == inbox.id
    assert (inbox.source, inbox.connection_id, inbox.external_id) == (
        "bookingtime",
        connection_id,
        "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W",
    )
    assert (inbox.event_type, inbox.subject_id, inbox.outcome) == (
        "appointment.created",
        "edR2mX7kP9qL4vN8sT3wY6zB1cF5hJ0a",
        "accepted",
    )

    snapshot = rows.appointments[0]
    assert snapshot.connection_id == connection_id
    assert snapshot.appointment_id == "edR2mX7kP9qL4vN8sT3wY6zB1cF5hJ0a"
    assert snapshot.payload == event["data"]["appointment"]  # as received, extra fields kept
    assert snapshot.event_at == datetime(2025, 6, 1, 8, 0, tzinfo=UTC)
    assert snapshot.event_type == "appointment.created"
    assert snapshot.canceled is False

    job = rows.jobs[0]
    assert body["job_id"] == job.id
    assert job.kind == "sync.appointment"
    assert job.state == "pending"
    assert job.args == {
        "connection_id": connection_id,
        "appointment_id": "edR2mX7kP9qL4vN8sT3wY6zB1cF5hJ0a",
    }
    assert job.dedupe_key == f"sync.appointment:{connection_id}:edR2mX7kP9qL4vN8sT3wY6zB1cF5hJ0a"
    assert job.serial_key == f"appointment:{connection_id}:edR2mX7kP9qL4vN8sT3wY6zB1cF5hJ0a"


async def test_job_is_visible_in_the_admin_job_list(
    sender: Sender, client: httpx.AsyncClient, admin_headers: dict[str, str], connection_id: int
) -> None:
    response = await sender.send(sample("appointment_created"))
    assert response.status_code == 202
    listing = await client.get("/api/v1/jobs", headers=admin_headers)
    if listing.status_code == 404:
        pytest.skip("the admin job list is not there yet")
    assert listing.status_code == 200
    assert response.json()["job_id"] in {job["id"] for job in listing.json()["items"]}


async def test_duplicate_webhook_id_is_200_and_stores_nothing_new(
    sender: Sender, database: Database, connection_id: int
) -> None:
    event = sample("appointment_created")
    first = await sender.send(event, webhook_id="msg_retry")
    assert first.status_code == 202
    before = await stored(database)

    # A retry: same id, a new attempt timestamp (and so a new signature).
    retry = await sender.send(event, webhook_id="msg_retry", at=datetime.now(UTC) - timedelta(1))
    assert retry.status_code == 401  # a day old: refused before the inbox is looked at
    retry = await sender.send(event, webhook_id="msg_retry")
    assert retry.status_code == 200
    assert retry.json() == {"status": "duplicate"}

    # Even a different body under a known id is a duplicate: the id is the idempotency key.
    changed = sample("appointment_updated")
    again = await sender.send(changed, webhook_id="msg_retry")
    assert again.status_code == 200

    after = await stored(database)
    assert after.counts == before.counts == (1, 1, 1)
    assert after.appointments[0].payload == event["data"]["appointment"]
    assert after.appointments[0].updated_at == before.appointments[0].updated_at


async def test_same_appointment_twice_coalesces_into_one_pending_job(
    sender: Sender, database: Database, connection_id: int
) -> None:
    first = await sender.send(sample("appointment_created"))
    second = await sender.send(sample("appointment_updated"))

    assert first.status_code == second.status_code == 202
    assert first.json()["job_id"] is not None
    assert second.json() == {
        "status": "accepted",
        "inbox_event_id": second.json()["inbox_event_id"],
        "job_id": None,
        "coalesced": True,
    }
    rows = await stored(database)
    assert rows.counts == (2, 1, 1)
    assert [row.outcome for row in rows.inbox] == ["accepted", "accepted"]
    # The one pending job will read the newest snapshot.
    assert rows.appointments[0].event_type == "appointment.updated"
    assert rows.appointments[0].payload["notes"] == "Bitte Unterlagen und Ausweis mitbringen"


async def test_distinct_appointments_get_a_job_each(
    sender: Sender, database: Database, connection_id: int
) -> None:
    for index in range(3):
        event = sample("appointment_created")
        event["data"]["appointment"]["id"] = f"edDistinct{index:022d}"
        assert (await sender.send(event)).status_code == 202
    rows = await stored(database)
    assert rows.counts == (3, 3, 3)
    assert len({job.dedupe_key for job in rows.jobs}) == 3


async def test_moved_event_replaces_the_snapshot(
    sender: Sender, database: Database, connection_id: int
) -> None:
    await sender.send(sample("appointment_created"))
    moved = sample("appointment_moved")
    response = await sender.send(moved)
    assert response.status_code == 202
    snapshot = (await stored(database)).appointments[0]
    assert snapshot.event_type == "appointment.moved"
    assert snapshot.payload["start"] == "2025-06-03T14:30:00+02:00"
    # `2025-06-01T10:10:00+02:00` is stored as the same instant in UTC.
    assert snapshot.event_at == datetime(2025, 6, 1, 8, 10, tzinfo=UTC)


async def test_canceled_event_sets_canceled(
    sender: Sender, database: Database, connection_id: int
) -> None:
    await sender.send(sample("appointment_created"))
    response = await sender.send(sample("appointment_canceled"))
    assert response.status_code == 202
    snapshot = (await stored(database)).appointments[0]
    assert snapshot.canceled is True
    assert snapshot.event_type == "appointment.canceled"


async def test_canceled_type_cancels_even_without_the_flag(
    sender: Sender, database: Database, connection_id: int
) -> None:
    event = sample("appointment_canceled")
    del event["data"]["appointment"]["canceled"]
    assert (await sender.send(event)).status_code == 202
    assert (await stored(database)).appointments[0].canceled is True


async def test_older_event_is_stale_and_keeps_the_snapshot(
    sender: Sender, database: Database, connection_id: int
) -> None:
    assert (await sender.send(sample("appointment_updated"))).status_code == 202
    before = await stored(database)

    response = await sender.send(sample("appointment_created"))  # 5 minutes older

    assert response.status_code == 202
    body = response.json()
    assert body["status"] == "stale"
    assert body["job_id"] is None
    after = await stored(database)
    assert after.counts == (2, 1, 1)
    assert after.inbox[1].outcome == "stale"
    assert after.inbox[1].id == body["inbox_event_id"]
    snapshot = after.appointments[0]
    assert snapshot.event_type == "appointment.updated"
    assert snapshot.payload == before.appointments[0].payload
    assert snapshot.event_at == datetime(2025, 6, 1, 8, 5, tzinfo=UTC)


async def test_equal_timestamp_last_received_wins(
    sender: Sender, database: Database, connection_id: int
) -> None:
    first = sample("appointment_created")
    second = sample("appointment_created")
    second["type"] = "appointment.updated"
    second["data"]["appointment"]["notes"] = "changed within the same second"
    assert (await sender.send(first)).status_code == 202
    response = await sender.send(second)
    assert response.json()["status"] == "accepted"
    snapshot = (await stored(database)).appointments[0]
    assert snapshot.payload["notes"] == "changed within the same second"


async def test_unknown_type_is_recorded_as_ignored(
    sender: Sender, database: Database, connection_id: int
) -> None:
    response = await sender.send(sample("customer_created"), webhook_id="msg_customer")
    assert response.status_code == 202
    assert response.json() == {
        "status": "ignored",
        "inbox_event_id": response.json()["inbox_event_id"],
        "job_id": None,
        "coalesced": False,
    }
    rows = await stored(database)
    assert rows.counts == (1, 0, 0)
    assert (rows.inbox[0].event_type, rows.inbox[0].outcome) == ("customer.created", "ignored")
    # Recorded, so its redelivery is a duplicate too.
    redelivery = await sender.send(sample("customer_created"), webhook_id="msg_customer")
    assert redelivery.status_code == 200


async def test_unknown_type_needs_only_type_and_timestamp(
    sender: Sender, database: Database, connection_id: int
) -> None:
    response = await sender.send({"type": "ping", "timestamp": "2025-06-01T08:00:00Z"})
    assert response.status_code == 202
    assert response.json()["status"] == "ignored"
    missing = await sender.send({"type": "ping"})
    body = assert_problem(missing, 422, "validation_failed")
    assert [error["field"] for error in body["errors"]] == ["timestamp"]
    assert (await count_rows(database)) == (1, 0, 0)


async def test_concurrent_duplicate_delivery_answers_one_202_and_the_rest_200(
    client: httpx.AsyncClient, database: Database, connection_id: int
) -> None:
    body = encode(sample("appointment_created"))
    headers = sign(body, webhook_id="msg_concurrent")

    responses = await asyncio.gather(
        *(client.post(URL, content=body, headers=headers) for _ in range(8))
    )

    statuses = sorted(response.status_code for response in responses)
    assert statuses == [200] * 7 + [202]
    assert (await count_rows(database)) == (1, 1, 1)


async def test_new_secret_works_at_once_old_one_lapses_within_a_second(
    sender: Sender,
    client: httpx.AsyncClient,
    app: FastAPI,
    database: Database,
    secret_box: SecretBox,
    connection_id: int,
) -> None:
    now = [1000.0]
    app.state.bookingtime_intake.receivers.clock = lambda: now[0]
    assert (await sender.send(sample("appointment_created"))).status_code == 202  # remembered
    new_secret = "whsec_" + "bmV3LXdlYmhvb2stc2VjcmV0LWFmdGVyLXJvdGF0aW9u"
    async with database.session_scope() as session:
        await session.execute(
            update(Connection)
            .where(Connection.id == connection_id)
            .values(webhook_secret_encrypted=secret_box.encrypt(new_secret))
        )
    event = encode(sample("appointment_updated"))
    new = await client.post(URL, content=event, headers=sign(event, secret=new_secret))
    assert new.status_code == 202, new.text

    now[0] += 0.5  # the old secret is no longer remembered once a fresh lookup replaced it
    moved = encode(sample("appointment_moved"))
    old = await client.post(URL, content=moved, headers=sign(moved))
    assert_problem(old, 401, "invalid_signature")


async def test_remembered_connection_expires(
    sender: Sender,
    client: httpx.AsyncClient,
    app: FastAPI,
    database: Database,
    secret_box: SecretBox,
    connection_id: int,
) -> None:
    now = [1000.0]
    app.state.bookingtime_intake.receivers.clock = lambda: now[0]
    assert (await sender.send(sample("appointment_created"))).status_code == 202
    async with database.session_scope() as session:
        await session.execute(
            update(Connection)
            .where(Connection.id == connection_id)
            .values(webhook_secret_encrypted=secret_box.encrypt("whsec_" + "c2Vjb25k" * 4))
        )
    event = encode(sample("appointment_updated"))
    within = await client.post(URL, content=event, headers=sign(event))
    assert within.status_code == 202  # at most one second of grace for the replaced secret
    now[0] += 1.5
    moved = encode(sample("appointment_moved"))
    after = await client.post(URL, content=moved, headers=sign(moved))
    assert_problem(after, 401, "invalid_signature")


async def test_delivery_for_a_deleted_connection_is_404_and_stores_nothing(
    sender: Sender, client: httpx.AsyncClient, database: Database, connection_id: int
) -> None:
    assert (await sender.send(sample("appointment_created"))).status_code == 202  # remembered
    async with database.session_scope() as session:
        await session.execute(delete(Connection).where(Connection.id == connection_id))
    event = encode(sample("appointment_updated"))
    response = await client.post(URL, content=event, headers=sign(event))
    assert_problem(response, 404, "unknown_organization")
    async with database.session() as session:
        assert await session.scalar(select(func.count()).select_from(InboxEvent)) == 0


# --- 404 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "organization_id",
    ["f6UnknownOrganisation00000000000", "x" * 65, "bad%20id", "%C3%BCber", "a!b"],
)
async def test_unknown_organization_is_404(
    sender: Sender, database: Database, connection_id: int, organization_id: str
) -> None:
    response = await sender.send(
        sample("appointment_created"), url=f"/webhooks/bookingtime/{organization_id}"
    )
    assert_problem(response, 404, "unknown_organization")
    assert (await count_rows(database)) == NOTHING


# --- 401 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("header", ["webhook-id", "webhook-timestamp", "webhook-signature"])
async def test_missing_signature_header_is_401(
    client: httpx.AsyncClient, database: Database, connection_id: int, header: str
) -> None:
    body = encode(sample("appointment_created"))
    headers = sign(body)
    del headers[header]
    assert_problem(await client.post(URL, content=body, headers=headers), 401, "missing_signature")
    headers[header] = ""
    assert_problem(await client.post(URL, content=body, headers=headers), 401, "missing_signature")
    assert (await count_rows(database)) == NOTHING


@pytest.mark.parametrize(
    "tamper",
    [
        "wrong_secret",
        "changed_body",
        "changed_id",
        "no_comma",
        "bad_base64",
        "v1a_only",
        "float_timestamp",
        "long_id",
    ],
)
async def test_bad_signature_is_401_and_echoes_no_secret(
    client: httpx.AsyncClient, database: Database, connection_id: int, tamper: str
) -> None:
    body = encode(sample("appointment_created"))
    headers = sign(body)
    if tamper == "wrong_secret":
        headers = sign(body, secret="whsec_" + "c29tZW9uZS1lbHNlcy1zZWNyZXQtdmFsdWUtMTIzNDU2")
    elif tamper == "changed_body":
        body = body.replace(b"Erika", b"Erica")
    elif tamper == "changed_id":
        headers["webhook-id"] = "msg_other"
    elif tamper == "no_comma":
        headers["webhook-signature"] = "garbage"
    elif tamper == "bad_base64":
        headers["webhook-signature"] = "v1,abc"
    elif tamper == "v1a_only":
        headers["webhook-signature"] = headers["webhook-signature"].replace("v1,", "v1a,")
    elif tamper == "float_timestamp":
        headers["webhook-timestamp"] += ".0"
    elif tamper == "long_id":
        headers = sign(body, webhook_id="msg_" + "x" * 252)

    response = await client.post(URL, content=body, headers=headers)

    problem = assert_problem(response, 401, "invalid_signature")
    assert "whsec_" not in response.text
    assert "Y2FsYnJpZGdl" not in response.text  # the test secret's base64
    assert problem["detail"]
    assert (await count_rows(database)) == NOTHING


async def test_one_matching_signature_among_several_is_enough(
    client: httpx.AsyncClient, connection_id: int
) -> None:
    body = encode(sample("appointment_created"))
    headers = sign(body)
    # Secret rotation on the sender's side: old and new signatures, space-separated.
    headers["webhook-signature"] = (
        "v1,Zm9yZ2VkLXNpZ25hdHVyZS1mcm9tLWFuLW9sZC1zZWNyZXQ= " + headers["webhook-signature"]
    )
    assert (await client.post(URL, content=body, headers=headers)).status_code == 202


@pytest.mark.parametrize("offset", [timedelta(minutes=-5, seconds=-30), timedelta(minutes=6)])
async def test_stale_or_future_timestamp_is_401(
    sender: Sender, database: Database, connection_id: int, offset: timedelta
) -> None:
    response = await sender.send(sample("appointment_created"), at=datetime.now(UTC) + offset)
    assert_problem(response, 401, "stale_timestamp")
    assert (await count_rows(database)) == NOTHING


async def test_timestamp_within_tolerance_is_accepted(sender: Sender, connection_id: int) -> None:
    response = await sender.send(
        sample("appointment_created"), at=datetime.now(UTC) - timedelta(minutes=4)
    )
    assert response.status_code == 202


# --- 413 --------------------------------------------------------------------------------------


def _oversized_document() -> bytes:
    # One byte over the cap, yet within the payload's limits (docs/webhooks.md): many strings
    # under the cap each, so one byte less is a valid delivery.
    event = sample("appointment_created")
    event["data"]["appointment"]["notes"] = ""
    extra: dict[str, str] = {}
    event["data"]["appointment"]["extra"] = extra
    while len(encode(event)) < 1024 * 1024 - 8000:
        extra[f"field{len(extra)}"] = "y" * 3000
    filler = 1024 * 1024 + 1 - len(encode(event))
    event["data"]["appointment"]["notes"] = "x" * filler
    body = encode(event)
    assert len(body) == 1024 * 1024 + 1
    return body


async def test_body_over_one_mib_is_413(
    client: httpx.AsyncClient, database: Database, connection_id: int
) -> None:
    body = _oversized_document()
    response = await client.post(URL, content=body, headers=sign(body))
    assert_problem(response, 413, "payload_too_large")
    assert (await count_rows(database)) == NOTHING


async def test_body_of_exactly_one_mib_is_read(
    client: httpx.AsyncClient, database: Database, connection_id: int
) -> None:
    body = _oversized_document()
    body = body.replace(b'"notes": "x', b'"notes": "', 1)
    assert len(body) == 1024 * 1024
    response = await client.post(URL, content=body, headers=sign(body))
    assert response.status_code == 202


class _CountingBody:
    """A request body in 64 KiB chunks that records how many chunks were pulled."""

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.chunks_read = 0

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for start in range(0, len(self.body), 64 * 1024):
            self.chunks_read += 1
            yield self.body[start : start + 64 * 1024]


async def test_declared_oversize_is_refused_before_reading(
    client: httpx.AsyncClient, database: Database, connection_id: int
) -> None:
    body = _oversized_document()
    stream = _CountingBody(body)
    headers = sign(body) | {"content-length": str(len(body))}
    response = await client.post(URL, content=stream, headers=headers)
    assert_problem(response, 413, "payload_too_large")
    assert stream.chunks_read == 0
    assert (await count_rows(database)) == NOTHING


async def test_chunked_oversize_stops_at_the_cap(
    client: httpx.AsyncClient, database: Database, connection_id: int
) -> None:
    body = _oversized_document() + b" " * (1024 * 1024)  # 2 MiB + 1 sent in chunks
    stream = _CountingBody(body)
    request = client.build_request("POST", URL, content=stream, headers=sign(body))
    assert "content-length" not in request.headers
    assert request.headers["transfer-encoding"] == "chunked"

    response = await client.send(request)

    assert_problem(response, 413, "payload_too_large")
    assert stream.chunks_read == 17  # 16 chunks are exactly 1 MiB; the 17th crosses the cap
    assert (await count_rows(database)) == NOTHING


async def test_chunked_body_within_the_cap_is_accepted(
    client: httpx.AsyncClient, connection_id: int
) -> None:
    body = encode(sample("appointment_created"))
    response = await client.post(URL, content=_CountingBody(body), headers=sign(body))
    assert response.status_code == 202


# --- 400 --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"{not json",
        b"",
        b"[]",
        b'"appointment.created"',
        b"null",
        b'{"type": "appointment.created", "timestamp": NaN}',
        # A complete, valid event but for one number beyond any double.
        encode(sample("appointment_created")).replace(b'"duration": 60', b'"duration": 1e400'),
        b'{"type": "appointment.created", "notes": "nul \\u0000 inside"}',
        b'{"type": "appointment.created", "notes": "lone \\ud800 surrogate"}',
        b"[" * 100_000 + b"]" * 100_000,
        b'{"type": "x", "timestamp": "2025-06-01T08:00:00Z", "data": '
        + b'{"a": ' * 40
        + b"1"
        + b"}" * 40
        + b"}",
    ],
    ids=[
        "syntax",
        "empty",
        "array",
        "string",
        "null",
        "nan",
        "huge-number",
        "nul",
        "surrogate",
        "deep",
        "nested",
    ],
)
async def test_invalid_json_is_400(
    client: httpx.AsyncClient, database: Database, connection_id: int, body: bytes
) -> None:
    response = await client.post(URL, content=body, headers=sign(body))
    assert_problem(response, 400, "invalid_json")
    assert (await count_rows(database)) == NOTHING


async def test_invalid_utf8_is_400(
    client: httpx.AsyncClient, database: Database, connection_id: int
) -> None:
    body = encode(sample("appointment_created")).replace("ä".encode(), b"\xe4")
    response = await client.post(URL, content=body, headers=sign_bytes(body))
    problem = assert_problem(response, 400, "invalid_json")
    assert "UTF-8" in problem["detail"]
    assert (await count_rows(database)) == NOTHING


async def test_invalid_utf8_without_a_valid_signature_is_401(
    client: httpx.AsyncClient, database: Database, connection_id: int
) -> None:
    body = encode(sample("appointment_created")).replace("ä".encode(), b"\xe4")
    headers = sign_bytes(body)
    headers["webhook-signature"] = "v1," + "A" * 43 + "="
    response = await client.post(URL, content=body, headers=headers)
    assert_problem(response, 401, "invalid_signature")
    assert (await count_rows(database)) == NOTHING


async def test_escaped_surrogate_pair_is_fine(
    sender: Sender, database: Database, connection_id: int
) -> None:
    event = sample("appointment_created")
    body = encode(event).replace("Beratungsgespräch".encode(), b"Termin \\ud83d\\udcc5")
    response = await sender.send(body)
    assert response.status_code == 202
    assert (await stored(database)).appointments[0].payload["name"] == "Termin \U0001f4c5"


# --- 422 --------------------------------------------------------------------------------------


def _without(path: str) -> dict[str, Any]:
    event = sample("appointment_created")
    *parents, last = path.split(".")
    node = event
    for part in parents:
        node = node[part]
    del node[last]
    return event


@pytest.mark.parametrize(
    "field",
    [
        "data.appointment.id",
        "data.appointment.start",
        "data.appointment.end",
        "data.appointment",
        "data.organizationId",
        "data",
        "timestamp",
    ],
)
async def test_missing_field_is_422_naming_it(
    sender: Sender, database: Database, connection_id: int, field: str
) -> None:
    response = await sender.send(_without(field))
    problem = assert_problem(response, 422, "validation_failed")
    assert field in problem["detail"]
    assert [error["field"] for error in problem["errors"]] == [field]
    assert (await count_rows(database)) == NOTHING


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("data.appointment.id", 42),
        ("data.appointment.id", ""),
        ("data.appointment.start", "2025-06-02T10:00:00"),  # no offset
        ("data.appointment.start", 1748851200),  # Unix time, not ISO-8601
        ("data.appointment.end", "tomorrow"),
        ("data.appointment.timeZone", "Europe/Berlin; DROP"),
        ("data.appointment.canceled", "yes"),
        ("timestamp", "2025-06-01"),
        ("timestamp", "9999-12-31T23:00:00-05:00"),
    ],
)
async def test_invalid_field_is_422_naming_it(
    sender: Sender, database: Database, connection_id: int, field: str, value: Any
) -> None:
    event = sample("appointment_created")
    *parents, last = field.split(".")
    node = event
    for part in parents:
        node = node[part]
    node[last] = value
    problem = assert_problem(await sender.send(event), 422, "validation_failed")
    assert [error["field"] for error in problem["errors"]] == [field]
    assert (await count_rows(database)) == NOTHING


async def test_organization_mismatch_is_422(
    sender: Sender, database: Database, connection_id: int
) -> None:
    event = sample("appointment_created")
    event["data"]["organizationId"] = "f6SomeOtherOrganisation000000000"
    problem = assert_problem(await sender.send(event), 422, "validation_failed")
    assert "data.organizationId" in problem["detail"]
    assert problem["errors"][0]["field"] == "data.organizationId"

    other = sample("customer_created")
    other["data"]["organizationId"] = "f6SomeOtherOrganisation000000000"
    assert_problem(await sender.send(other), 422, "validation_failed")
    assert (await count_rows(database)) == NOTHING


async def test_optional_fields_may_be_absent(
    sender: Sender, database: Database, connection_id: int
) -> None:
    event = {
        "type": "appointment.created",
        "timestamp": "2025-06-01T08:00:00+00:00",
        "data": {
            "organizationId": ORGANIZATION_ID,
            "appointment": {
                "id": "edMinimal000000000000000000000000",
                "start": "2025-06-02T10:00:00Z",
                "end": "2025-06-02T11:00:00Z",
            },
        },
    }
    assert (await sender.send(event)).status_code == 202
    assert (await stored(database)).appointments[0].canceled is False


# --- OpenAPI ----------------------------------------------------------------------------------


async def test_openapi_documents_the_endpoint(app: FastAPI) -> None:
    operation = app.openapi()["paths"]["/webhooks/bookingtime/{organization_id}"]["post"]
    assert operation["summary"]
    assert "Standard Webhooks" in operation["description"]
    for status in ("200", "202", "400", "401", "404", "413", "422"):
        assert status in operation["responses"]
    assert "application/problem+json" in operation["responses"]["401"]["content"]
    body = operation["requestBody"]["content"]["application/json"]
    assert body["example"]["type"] == "appointment.created"
    assert "$defs" not in str(body["schema"])
    assert {"type", "timestamp", "data"} <= set(body["schema"]["required"])
    headers = {p["name"] for p in operation["parameters"] if p["in"] == "header"}
    assert headers == {"webhook-id", "webhook-timestamp", "webhook-signature"}
    # The handler reads the raw request body; the document still shows the path
    # parameter and what each answer looks like.
    path = [p["name"] for p in operation["parameters"] if p["in"] == "path"]
    assert path == ["organization_id"]
    schemas = {
        status: operation["responses"][status]["content"]["application/json"]["schema"]["$ref"]
        for status in ("200", "202")
    }
    assert schemas == {
        "200": "#/components/schemas/DuplicateResult",
        "202": "#/components/schemas/IntakeResult",
    }
