"""plan(): one action per mailbox; unchanged costs nothing, changes send only changed fields."""

from __future__ import annotations

from typing import Any

import pytest

from app.sync.keys import appointment_tag, transaction_id
from app.sync.planner import Action, Create, Delete, MappingState, Skip, Update, plan
from app.sync.settings import TranslationSettings
from app.sync.translate import InvalidAppointment, translate
from tests.sync.samples import MAX, ORG, appointment

APPT = "edR2mX7kP9qL4vN8sT3wY6zB1cF5hJ0a"
ERIKA = "brErika000000000000000000000000"
ROOM = "73Room0000000000000000000000000"
DEFAULT = TranslationSettings()
MARK = TranslationSettings(on_cancel="mark")
TAG = appointment_tag(ORG, APPT, MAX)


def run(
    payload: dict[str, Any],
    mappings: list[MappingState] | None = None,
    employees: dict[str, str] | None = None,
    settings: TranslationSettings = DEFAULT,
) -> list[Action]:
    return plan(
        payload,
        organization_id=ORG,
        employees={MAX: "max@firma.de"} if employees is None else employees,
        mappings=mappings or [],
        settings=settings,
    )


def written(
    payload: dict[str, Any],
    *,
    settings: TranslationSettings = DEFAULT,
    mailbox: str = "max@firma.de",
    resource: str = MAX,
    generation: int = 1,
) -> MappingState:
    """The row the executor stores after writing `payload` successfully."""
    hashes = translate(payload, settings).field_hashes()
    return MappingState(resource, mailbox, generation, f"ev-{resource}-{generation}", hashes)


def with_employees(*resources: str) -> dict[str, Any]:
    listed = [{"id": r, "type": "EMPLOYEE", "firstName": r} for r in resources]
    listed.append({"id": ROOM, "type": "RESOURCE", "name": "Raum 1"})
    return appointment(bookingResourceList=listed)


def test_new_appointment_creates() -> None:
    (action,) = run(appointment())
    assert isinstance(action, Create)
    assert action.mailbox == "max@firma.de"
    assert action.booking_resource_id == MAX
    assert action.generation == 1
    assert action.transaction_id == transaction_id(ORG, APPT, MAX, 1)
    assert action.tag == TAG
    assert action.lookup_first is False
    assert action.event == translate(appointment(), DEFAULT).to_graph()
    assert "attendees" not in action.event


@pytest.mark.parametrize("redelivered", ["created", "updated"])
def test_unchanged_or_redelivered_skips(redelivered: str) -> None:
    actions = run(appointment(redelivered), [written(appointment(redelivered))])
    assert actions == [Skip(MAX, "max@firma.de", "unchanged")]


def test_move_updates_only_start_and_end() -> None:
    before = appointment()
    moved = appointment(start="2025-06-03T14:30:00+02:00", end="2025-06-03T15:30:00+02:00")
    (action,) = run(moved, [written(before)])
    assert isinstance(action, Update)
    assert action.graph_event_id == "ev-" + MAX + "-1"
    assert action.changed == ("start", "end")
    assert dict(action.changes) == {
        "start": {"dateTime": "2025-06-03T14:30:00", "timeZone": "W. Europe Standard Time"},
        "end": {"dateTime": "2025-06-03T15:30:00", "timeZone": "W. Europe Standard Time"},
    }
    assert action.field_hashes == translate(moved, DEFAULT).field_hashes()
    # A 404 on the PATCH re-creates as a new generation (a fresh transactionId).
    assert action.recreate.generation == 2
    assert action.recreate.transaction_id == transaction_id(ORG, APPT, MAX, 2)
    assert action.recreate.lookup_first is False


def test_moved_sample_updates_times_and_body() -> None:
    (action,) = run(appointment("moved"), [written(appointment("created"))])
    assert isinstance(action, Update)
    assert set(action.changed) == {"start", "end", "body"}  # the sample's notes changed too


def test_setting_change_updates_only_that_field() -> None:
    row = written(appointment())
    (action,) = run(appointment(), [row], settings=TranslationSettings(reminder_minutes=30))
    assert isinstance(action, Update)
    assert dict(action.changes) == {"reminderMinutesBeforeStart": 30}


def test_cancel_deletes() -> None:
    actions = run(appointment("canceled"), [written(appointment())])
    assert actions == [Delete("max@firma.de", MAX, "ev-" + MAX + "-1", TAG, "canceled")]


def test_cancel_before_any_write_skips() -> None:
    assert run(appointment("canceled")) == [Skip(MAX, "max@firma.de", "canceled")]
    assert run(appointment("canceled"), settings=MARK) == [Skip(MAX, "max@firma.de", "canceled")]


def test_cancel_of_an_already_deleted_event_skips() -> None:
    tombstone = MappingState(MAX, "max@firma.de", 1, None, {}, deleted=True)
    assert run(appointment("canceled"), [tombstone]) == [Skip(MAX, "max@firma.de", "canceled")]


def test_cancel_with_mark_updates_subject_show_as_and_reminder() -> None:
    (action,) = run(appointment("canceled"), [written(appointment("moved"))], settings=MARK)
    assert isinstance(action, Update)
    assert set(action.changed) == {"subject", "showAs", "isReminderOn"}
    assert action.changes.get("subject", "").startswith("Abgesagt: ")
    assert action.changes.get("showAs") == "free"


def test_mark_already_applied_skips() -> None:
    row = written(appointment("canceled"), settings=MARK)
    actions = run(appointment("canceled"), [row], settings=MARK)
    assert actions == [Skip(MAX, "max@firma.de", "unchanged")]


def test_cancel_with_unknown_create_outcome_deletes_by_tag() -> None:
    pending = MappingState(MAX, "max@firma.de", 1)
    actions = run(appointment("canceled"), [pending])
    assert actions == [Delete("max@firma.de", MAX, None, TAG, "canceled")]


def test_removed_employee_loses_the_event() -> None:
    payload = with_employees(ERIKA)
    employees = {MAX: "max@firma.de", ERIKA: "erika@firma.de"}
    actions = run(payload, [written(appointment())], employees)
    assert isinstance(actions[0], Create) and actions[0].mailbox == "erika@firma.de"
    assert actions[1] == Delete("max@firma.de", MAX, "ev-" + MAX + "-1", TAG, "removed")
    assert len(actions) == 2


def test_unmapped_employee_is_skipped_once_per_plan() -> None:
    actions = run(with_employees(MAX, ERIKA))
    assert isinstance(actions[0], Create)
    assert actions[1:] == [Skip(ERIKA, None, "unmapped")]


def test_employee_unmapped_after_a_write_loses_the_event() -> None:
    actions = run(appointment(), [written(appointment())], employees={})
    assert actions == [
        Delete("max@firma.de", MAX, "ev-" + MAX + "-1", TAG, "unmapped"),
        Skip(MAX, None, "unmapped"),
    ]


def test_rooms_and_other_resources_are_ignored() -> None:
    payload = with_employees()
    assert run(payload, employees={ROOM: "raum@firma.de"}) == []


def test_mailbox_change_deletes_old_and_creates_new_generation() -> None:
    row = written(appointment())
    actions = run(appointment(), [row], employees={MAX: "m.mustermann@firma.de"})
    assert actions[0] == Delete("max@firma.de", MAX, row.graph_event_id, TAG, "mailbox_changed")
    create = actions[1]
    assert isinstance(create, Create)
    assert create.mailbox == "m.mustermann@firma.de"
    assert create.generation == 2
    assert create.transaction_id == transaction_id(ORG, APPT, MAX, 2)
    assert create.transaction_id != transaction_id(ORG, APPT, MAX, 1)
    assert len(actions) == 2


def test_mailbox_case_is_not_a_change() -> None:
    actions = run(appointment(), [written(appointment())], employees={MAX: " Max@Firma.DE"})
    assert actions == [Skip(MAX, " Max@Firma.DE", "unchanged")]


def test_moving_back_to_an_old_mailbox_never_reuses_a_generation() -> None:
    old = MappingState(MAX, "max@firma.de", 1, None, {}, deleted=True)
    current = written(appointment(), mailbox="other@firma.de", generation=2)
    actions = run(appointment(), [old, current])
    assert isinstance(actions[0], Delete) and actions[0].mailbox == "other@firma.de"
    create = actions[1]
    assert isinstance(create, Create) and create.generation == 3


def test_unknown_create_outcome_retries_the_same_create_after_lookup() -> None:
    pending = MappingState(MAX, "max@firma.de", 1)
    (action,) = run(appointment("updated"), [pending])
    assert isinstance(action, Create)
    assert action.lookup_first is True
    assert action.generation == 1
    assert action.transaction_id == transaction_id(ORG, APPT, MAX, 1)
    assert action.event == translate(appointment("updated"), DEFAULT).to_graph()


def test_unknown_outcome_after_a_recreate_keeps_that_generation() -> None:
    pending = MappingState(MAX, "max@firma.de", 4)
    (action,) = run(appointment(), [pending])
    assert isinstance(action, Create) and action.lookup_first and action.generation == 4


def test_duplicate_rows_in_one_mailbox_keep_one() -> None:
    keep = written(appointment(), generation=2)
    stray = MappingState(MAX, "max@firma.de", 1, "ev-stray", {})
    actions = run(appointment(), [stray, keep])
    assert actions == [
        Delete("max@firma.de", MAX, "ev-stray", TAG, "duplicate"),
        Skip(MAX, "max@firma.de", "unchanged"),
    ]


def test_two_employees_get_independent_actions() -> None:
    payload = with_employees(MAX, ERIKA)
    employees = {MAX: "max@firma.de", ERIKA: "erika@firma.de"}
    first = run(payload, employees=employees)
    assert [type(a) for a in first] == [Create, Create]
    assert [a.mailbox for a in first] == ["max@firma.de", "erika@firma.de"]
    assert isinstance(first[0], Create) and isinstance(first[1], Create)
    assert first[0].transaction_id != first[1].transaction_id
    assert first[0].tag != first[1].tag
    # Max already has the event, Erika's create got lost: one skip, one retried create.
    rows = [
        written(payload, resource=MAX),
        MappingState(ERIKA, "erika@firma.de", 1),
    ]
    second = run(payload, rows, employees)
    assert second[0] == Skip(MAX, "max@firma.de", "unchanged")
    assert isinstance(second[1], Create) and second[1].lookup_first


def test_two_employees_sharing_a_mailbox_get_two_events() -> None:
    payload = with_employees(MAX, ERIKA)
    actions = run(payload, employees={MAX: "team@firma.de", ERIKA: "team@firma.de"})
    assert [type(a) for a in actions] == [Create, Create]
    assert len({a.tag for a in actions if isinstance(a, Create)}) == 2


def test_canceled_flag_can_be_given_apart_from_the_payload() -> None:
    actions = plan(
        appointment(),
        organization_id=ORG,
        employees={MAX: "max@firma.de"},
        mappings=[written(appointment())],
        settings=DEFAULT,
        canceled=True,
    )
    assert [type(a) for a in actions] == [Delete]


@pytest.mark.parametrize(
    "changes",
    [{"id": None}, {"bookingResourceList": None}],
)
def test_unplannable_payloads_raise(changes: dict[str, Any]) -> None:
    with pytest.raises(InvalidAppointment):
        run(appointment(**changes), [written(appointment())])


def test_canceled_payload_without_resources_still_deletes() -> None:
    payload = appointment("canceled")
    del payload["bookingResourceList"]
    actions = run(payload, [written(appointment())])
    assert actions == [Delete("max@firma.de", MAX, "ev-" + MAX + "-1", TAG, "canceled")]


def test_deleting_needs_no_translation() -> None:
    # A broken payload must not keep a canceled appointment's event alive.
    payload = appointment("canceled", start="garbage")
    assert [type(a) for a in run(payload, [written(appointment())])] == [Delete]


def test_force_sends_every_field_of_an_unchanged_event() -> None:
    payload = appointment()
    row = written(payload)
    (plain,) = run(payload, [row])
    assert isinstance(plain, Skip)
    (forced,) = plan(
        payload,
        organization_id=ORG,
        employees={MAX: "max@firma.de"},
        mappings=[row],
        settings=DEFAULT,
        force=True,
    )
    assert isinstance(forced, Update)
    assert set(forced.changed) == set(translate(payload, DEFAULT).to_graph())
    assert forced.recreate.generation == 2  # a deleted event comes back as a new generation
