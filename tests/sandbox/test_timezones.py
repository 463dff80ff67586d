"""The sandbox knows every Windows zone name Graph does (CLDR's table), and no made-up ones."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from app.sandbox.errors import GraphError
from app.sandbox.timezones import resolve


@pytest.mark.parametrize(
    ("name", "offset_hours"),
    [
        ("W. Europe Standard Time", 1),
        ("Nepal Standard Time", 5.75),  # beyond the few dozen names a hand-made table would hold
        ("Chatham Islands Standard Time", 13.75),
        ("Europe/Berlin", 1),
        ("UTC", 0),
    ],
)
def test_known_names_resolve(name: str, offset_hours: float) -> None:
    offset = datetime(2026, 1, 15, 12, tzinfo=UTC).astimezone(resolve(name)).utcoffset()
    assert offset is not None and offset.total_seconds() == offset_hours * 3600


def test_unknown_name_is_graphs_400() -> None:
    with pytest.raises(GraphError) as error:
        resolve("Mars Standard Time")
    assert error.value.status == 400
