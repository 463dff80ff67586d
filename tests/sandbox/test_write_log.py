"""The control API's write log: what a benchmark reads instead of polling every mailbox."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import httpx

from app.sandbox.state import SandboxState
from app.sandbox.write_log import WriteLog
from tests.sandbox.conftest import TAG_ID, Setup

TRANSACTION_ID = "0d5c7a52-3c2e-4b53-9d27-3f0f4d0b6a11"
EVENT = {
    "subject": "Beratung",
    "start": {"dateTime": "2030-04-15T12:00:00", "timeZone": "W. Europe Standard Time"},
    "end": {"dateTime": "2030-04-15T13:00:00", "timeZone": "W. Europe Standard Time"},
    "transactionId": TRANSACTION_ID,
    "singleValueExtendedProperties": [{"id": TAG_ID, "value": "org:appointment:employee"}],
}
IMMUTABLE = {"Prefer": 'IdType="ImmutableId"'}


async def test_create_update_delete_are_logged_with_identity_and_time(
    graph: httpx.AsyncClient, setup: Setup
) -> None:
    before = time.monotonic()
    base = f"/v1.0/users/{setup.max_id}/events"
    created = await graph.post(base, json=EVENT, headers=IMMUTABLE)
    assert created.status_code == 201, created.text
    event_id = created.json()["id"]
    # A retried POST with the same transactionId returns the same event: not a write.
    again = await graph.post(base, json=EVENT, headers=IMMUTABLE)
    assert again.status_code == 201 and again.json()["id"] == event_id
    moved = {
        "start": {"dateTime": "2030-04-16T09:30:00", "timeZone": "UTC"},
        "end": {"dateTime": "2030-04-16T10:30:00", "timeZone": "UTC"},
    }
    assert (await graph.patch(f"{base}/{event_id}", json=moved)).status_code == 200
    assert (await graph.delete(f"{base}/{event_id}")).status_code == 204
    after = time.monotonic()

    page = setup.control.writes()
    assert [w.change_type for w in page.writes] == ["created", "updated", "deleted"]
    assert page.last_sequence == page.writes[-1].sequence and page.dropped == 0
    for write in page.writes:
        assert write.user_id == setup.max_id and write.event_id == event_id
        # The delete still names what it removed, though the event is gone.
        assert write.transaction_id == TRANSACTION_ID
        assert write.extended == {TAG_ID: "org:appointment:employee"}
    created_w, updated_w, deleted_w = page.writes
    # W. Europe Standard Time is UTC+2 in April.
    assert created_w.start == datetime(2030, 4, 15, 10, 0, tzinfo=UTC)
    assert updated_w.start == datetime(2030, 4, 16, 9, 30, tzinfo=UTC)
    assert updated_w.end == datetime(2030, 4, 16, 10, 30, tzinfo=UTC)
    assert deleted_w.start is None
    stamps = [w.monotonic for w in page.writes]
    assert before <= stamps[0] <= stamps[1] <= stamps[2] <= after

    newer = setup.control.writes(after=created_w.sequence)
    assert [w.sequence for w in newer.writes] == [updated_w.sequence, deleted_w.sequence]
    assert setup.control.writes(after=created_w.sequence, limit=1).writes == [updated_w]


async def test_outlook_edits_through_the_control_api_are_logged(setup: Setup) -> None:
    event_id = setup.control.outlook_create("erika@contoso.example", {"subject": "Zahnarzt"})
    setup.control.outlook_delete("erika@contoso.example", event_id)
    page = setup.control.writes()
    assert [(w.change_type, w.user_id) for w in page.writes] == [
        ("created", setup.erika_id),
        ("deleted", setup.erika_id),
    ]
    assert page.writes[0].transaction_id is None and page.writes[0].extended == {}


async def test_http_endpoint_pages_and_clears(
    http: httpx.AsyncClient, graph: httpx.AsyncClient, setup: Setup
) -> None:
    base = f"/v1.0/users/{setup.max_id}/events"
    created = await graph.post(base, json=EVENT, headers=IMMUTABLE)
    event_id = created.json()["id"]
    assert (await graph.delete(f"{base}/{event_id}")).status_code == 204

    body = (await http.get("/_sandbox/writes")).json()
    assert body["last_sequence"] == 2 and body["dropped"] == 0
    first, second = body["writes"]
    assert first["change_type"] == "created" and second["change_type"] == "deleted"
    assert first["transaction_id"] == TRANSACTION_ID
    assert first["extended"] == {TAG_ID: "org:appointment:employee"}
    assert first["start"] == "2030-04-15T10:00:00+00:00" and second["start"] is None
    assert isinstance(first["monotonic"], float)
    assert datetime.fromisoformat(first["at"]).tzinfo is not None

    tail = (await http.get("/_sandbox/writes", params={"after": 1})).json()
    assert [w["sequence"] for w in tail["writes"]] == [2]
    assert (await http.get("/_sandbox/writes", params={"after": -1})).status_code == 422
    assert (await http.get("/_sandbox/writes", params={"limit": 0})).status_code == 422

    assert (await http.delete("/_sandbox/writes")).status_code == 204
    cleared = (await http.get("/_sandbox/writes")).json()
    assert cleared == {"writes": [], "last_sequence": 2, "dropped": 0}


def test_a_full_log_drops_the_oldest_and_counts_them() -> None:
    state = SandboxState()
    log = WriteLog(capacity=2)
    log.attach(state)
    for index in range(3):
        state.record_change("deleted", "user", f"event-{index}")
    page = log.page()
    assert [w.event_id for w in page.writes] == ["event-1", "event-2"]
    assert page.dropped == 1 and page.last_sequence == 3
    assert [w.event_id for w in log.page(after=1).writes] == ["event-1", "event-2"]
    assert [w.event_id for w in log.page(after=2).writes] == ["event-2"]
    assert log.page(after=3).writes == []
