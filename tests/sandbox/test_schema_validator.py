"""The small validator must reject what the oracle rejects, or the schema checks prove nothing."""

from __future__ import annotations

from tests.sandbox.schema import _schemas, errors_of


def test_rejects_wrong_case_enum_and_bad_types() -> None:
    event = _schemas()["microsoft.graph.event"]
    assert errors_of({"showAs": "Busy"}, event)
    assert errors_of({"isAllDay": "yes"}, event)
    assert errors_of({"createdDateTime": "2017-04-15 03:00"}, event)
    assert not errors_of(
        {"showAs": "busy", "createdDateTime": "2017-04-15T03:00:50.7579581Z"}, event
    )


def test_rejects_error_without_code() -> None:
    assert errors_of({"error": {"message": "x"}}, _schemas()["odata.error"])
