"""The pure change-detection core: fingerprints, window hashes, diffs, vanished verdicts."""

from __future__ import annotations

import copy
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from app.polling.changes import (
    WindowChanges,
    classify_vanished,
    diff,
    fingerprint,
    fingerprints,
    window_hash,
)
from tests.bookingtime_api.samples import APPOINTMENT, ERIKA, MAX


def appointment(**changes: Any) -> dict[str, Any]:
    raw = copy.deepcopy(APPOINTMENT)
    raw.update(changes)
    return raw


def other(id_: str, **changes: Any) -> dict[str, Any]:
    return appointment(id=id_, **changes)


def test_fingerprint_is_stable_short_hex() -> None:
    value = fingerprint(appointment())
    assert value == fingerprint(appointment())
    assert len(value) == 32
    int(value, 16)


def test_key_order_does_not_matter() -> None:
    raw = appointment(customer={"firstName": "Erika", "lastName": "Mustermann"})
    reordered = dict(reversed(list(raw.items())))
    reordered["customer"] = {"lastName": "Mustermann", "firstName": "Erika"}
    assert fingerprint(reordered) == fingerprint(raw)


def test_booking_resource_order_does_not_matter() -> None:
    max_ = {"class": "BOOKING_RESOURCE_SHORT", "id": MAX, "name": "Max"}
    erika = {"class": "BOOKING_RESOURCE_SHORT", "id": ERIKA, "name": "Erika"}
    assert fingerprint(appointment(bookingResourceList=[max_, erika])) == fingerprint(
        appointment(bookingResourceList=[erika, max_])
    )
    # Only the ids count: a renamed resource is no change to the appointment.
    renamed = {**max_, "name": "Max M."}
    assert fingerprint(appointment(bookingResourceList=[renamed])) == fingerprint(
        appointment(bookingResourceList=[max_])
    )


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("start", "2026-03-27T09:15:00+01:00"),
        ("end", "2026-03-27T11:00:00+01:00"),
        ("timeZone", "Europe/London"),
        ("canceled", True),
        ("moved", True),
        ("bookingResourceList", [{"class": "BOOKING_RESOURCE_SHORT", "id": ERIKA}]),
        ("bookingResourceList", []),
        ("name", "Folgetermin"),
        ("notes", "bitte klingeln"),
        ("customer", {"firstName": "Erika", "lastName": "Mustermann"}),
        ("address", {"street": "teststreet 12", "city": "Hamburg"}),
        ("address", None),
    ],
)
def test_every_listed_field_changes_the_fingerprint(field: str, value: Any) -> None:
    assert fingerprint(appointment(**{field: value})) != fingerprint(appointment())


def test_a_nested_change_in_customer_or_address_counts() -> None:
    base = appointment(customer={"firstName": "Erika", "email": "erika@example.com"})
    changed = copy.deepcopy(base)
    changed["customer"]["email"] = "erika@example.org"
    assert fingerprint(changed) != fingerprint(base)
    moved_house = appointment()
    moved_house["address"]["zip"] = "22455"
    assert fingerprint(moved_house) != fingerprint(appointment())


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("priceGross", 99),
        ("fileList", [{"class": "FILE", "id": "fi1"}]),
        ("description", "Zweitgespräch"),
        ("customId", "other"),
        ("duration", 45),
        ("timestampEdit", "2026-03-28T08:00:00+01:00"),
        ("organizationId", "f6SampleOrganization000000000009"),
    ],
)
def test_fields_outside_the_list_do_not_change_it(field: str, value: Any) -> None:
    assert fingerprint(appointment(**{field: value})) == fingerprint(appointment())


@pytest.mark.parametrize("field", ["timeZone", "name", "notes", "customer", "address"])
def test_missing_and_null_hash_the_same(field: str) -> None:
    missing = appointment()
    missing.pop(field)
    assert fingerprint(missing) == fingerprint(appointment(**{field: None}))


@pytest.mark.parametrize("field", ["canceled", "moved", "bookingResourceList"])
def test_missing_null_and_empty_flags_and_lists_agree(field: str) -> None:
    missing = appointment()
    missing.pop(field)
    empty: Any = False if field != "bookingResourceList" else []
    assert fingerprint(missing) == fingerprint(appointment(**{field: None}))
    assert fingerprint(missing) == fingerprint(appointment(**{field: empty}))


def test_php_empty_array_customer_is_null() -> None:
    assert fingerprint(appointment(customer=[])) == fingerprint(appointment(customer=None))


def test_the_same_instant_with_another_offset_is_no_change() -> None:
    base = appointment(start="2026-03-27T09:00:00+01:00", end="2026-03-27T10:30:00+01:00")
    in_utc = appointment(start="2026-03-27T08:00:00Z", end="2026-03-27T09:30:00.000+00:00")
    basic_offset = appointment(start="2026-03-27T09:00+0100", end="2026-03-27T10:30:00+01:00")
    assert fingerprint(in_utc) == fingerprint(base)
    assert fingerprint(basic_offset) == fingerprint(base)
    # Same wall clock, another offset: another instant, so a change.
    shifted = appointment(start="2026-03-27T09:00:00+02:00")
    assert fingerprint(shifted) != fingerprint(base)


def test_unparsable_timestamps_are_compared_as_text() -> None:
    typo = appointment(start="2024-01-023T10:00:00+01:00")
    assert fingerprint(typo) == fingerprint(appointment(start="2024-01-023T10:00:00+01:00"))
    assert fingerprint(typo) != fingerprint(appointment(start="2024-01-023T10:00:00+02:00"))


def test_window_hash_ignores_order() -> None:
    window = [other("ed1"), other("ed2", name="B"), other("ed3", canceled=True)]
    assert window_hash(window) == window_hash(list(reversed(window)))
    assert window_hash([]) == window_hash([])


def test_window_hash_sees_every_change() -> None:
    window = [other("ed1"), other("ed2")]
    base = window_hash(window)
    assert window_hash([other("ed1"), other("ed2", notes="x")]) != base
    assert window_hash([other("ed1")]) != base
    assert window_hash([*window, other("ed3")]) != base
    # The same content under another id is another window.
    assert window_hash([other("ed1"), other("ed9")]) != base
    assert window_hash([]) != base
    # Outside the fingerprint: the window is unchanged, so the poll writes nothing.
    assert window_hash([other("ed1", priceGross=1), other("ed2")]) == base


def test_fingerprints_by_id() -> None:
    by_id = fingerprints([other("ed1"), other("ed2", name="B")])
    assert by_id == {"ed1": fingerprint(other("ed1")), "ed2": fingerprint(other("ed2", name="B"))}


def test_diff_sorts_new_changed_and_vanished() -> None:
    previous = {"edB": "1", "edA": "2", "edC": "3", "edD": "4"}
    current = {"edD": "4", "edA": "2x", "edF": "5", "edE": "6", "edC": "3x"}
    changes = diff(previous, current)
    assert changes == WindowChanges(
        new=("edE", "edF"), changed=("edA", "edC"), vanished=("edB",), unchanged=1
    )
    assert not changes.nothing_changed


def test_diff_of_equal_polls_is_empty() -> None:
    same = {"edA": "1", "edB": "2"}
    changes = diff(same, dict(same))
    assert changes == WindowChanges(new=(), changed=(), vanished=(), unchanged=2)
    assert changes.nothing_changed
    assert diff({}, {}).nothing_changed


def test_first_poll_is_all_new_and_an_emptied_window_all_vanished() -> None:
    assert diff({}, {"edB": "2", "edA": "1"}) == WindowChanges(("edA", "edB"), (), (), 0)
    assert diff({"edB": "2", "edA": "1"}, {}) == WindowChanges((), (), ("edA", "edB"), 0)


def test_a_listed_cancellation_is_a_change() -> None:
    live, canceled = other("ed1"), other("ed1", canceled=True)
    changes = diff(fingerprints([live]), fingerprints([canceled]))
    assert changes.changed == ("ed1",)
    assert changes.vanished == ()


WEEK_START = datetime(2026, 3, 23, tzinfo=timezone(timedelta(hours=1)))
WEEK_END = WEEK_START + timedelta(days=7)


def shown(start: str, end: str, **changes: Any) -> dict[str, Any]:
    return appointment(start=start, end=end, **changes)


def test_a_404_is_a_deletion() -> None:
    assert classify_vanished(None, WEEK_START, WEEK_END) == "deleted"


def test_canceled_wins_even_inside_the_window() -> None:
    inside = shown("2026-03-27T09:00:00+01:00", "2026-03-27T10:00:00+01:00", canceled=True)
    assert classify_vanished(inside, WEEK_START, WEEK_END) == "canceled"
    outside = shown("2026-04-27T09:00:00+02:00", "2026-04-27T10:00:00+02:00", canceled=True)
    assert classify_vanished(outside, WEEK_START, WEEK_END) == "canceled"


def test_moved_out_of_the_window() -> None:
    later = shown("2026-04-03T09:00:00+02:00", "2026-04-03T10:00:00+02:00")
    earlier = shown("2026-03-20T09:00:00+01:00", "2026-03-20T10:00:00+01:00")
    assert classify_vanished(later, WEEK_START, WEEK_END) == "moved_out"
    assert classify_vanished(earlier, WEEK_START, WEEK_END) == "moved_out"


def test_still_inside_the_window() -> None:
    inside = shown("2026-03-27T09:00:00+01:00", "2026-03-27T10:00:00+01:00", moved=True)
    assert classify_vanished(inside, WEEK_START, WEEK_END) == "still_inside"
    # Overlapping either edge is inside: [start, end) meets the window.
    across_start = shown("2026-03-22T23:30:00+01:00", "2026-03-23T00:30:00+01:00")
    across_end = shown("2026-03-29T23:30:00+02:00", "2026-03-30T01:30:00+02:00")
    assert classify_vanished(across_start, WEEK_START, WEEK_END) == "still_inside"
    assert classify_vanished(across_end, WEEK_START, WEEK_END) == "still_inside"


def test_window_edges_are_half_open() -> None:
    # Ending exactly when the window starts, or starting when it ends, is outside.
    ends_at_start = shown("2026-03-22T23:00:00+01:00", "2026-03-23T00:00:00+01:00")
    starts_at_end = shown("2026-03-30T00:00:00+01:00", "2026-03-30T01:00:00+01:00")
    assert classify_vanished(ends_at_start, WEEK_START, WEEK_END) == "moved_out"
    assert classify_vanished(starts_at_end, WEEK_START, WEEK_END) == "moved_out"
    # The window's edges in UTC, the appointment's in +01:00: compared as instants.
    utc_start = WEEK_START.astimezone(UTC)
    first_minute = shown("2026-03-23T00:00:00+01:00", "2026-03-23T00:01:00+01:00")
    assert classify_vanished(first_minute, utc_start, WEEK_END) == "still_inside"


def test_an_instant_counts_where_the_window_holds_it() -> None:
    at_start = shown("2026-03-23T00:00:00+01:00", "2026-03-23T00:00:00+01:00")
    at_end = shown("2026-03-30T00:00:00+01:00", "2026-03-30T00:00:00+01:00")
    assert classify_vanished(at_start, WEEK_START, WEEK_END) == "still_inside"
    assert classify_vanished(at_end, WEEK_START, WEEK_END) == "moved_out"


def test_naive_window_bounds_are_refused() -> None:
    inside = shown("2026-03-27T09:00:00+01:00", "2026-03-27T10:00:00+01:00")
    with pytest.raises(ValueError, match="timezone-aware"):
        classify_vanished(inside, WEEK_START.replace(tzinfo=None), WEEK_END)
