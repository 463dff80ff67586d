"""The history's messages: Accept-Language negotiation and every code rendered in both languages."""

from __future__ import annotations

import pytest

from app.history.messages import MESSAGES, message, preferred_locale


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("en", "en"),
        ("en-GB", "en"),
        ("DE-de", "de"),
        ("de-DE,de;q=0.9,en;q=0.8", "de"),
        ("en;q=0.4, de;q=0.6", "de"),
        ("fr-CH, fr;q=0.9, en;q=0.8, de;q=0.7, *;q=0.5", "en"),
        ("fr, *;q=0.1", "de"),  # any language: calbridge's own default
        ("fr", None),
        ("en;q=0, de;q=0", None),  # q=0 means "not acceptable"
        ("en;q=abc, de", "de"),
        ("de;q=0.5, en;q=0.5", "de"),  # equal quality: the earlier one
        (",,;;q=,", None),
    ],
)
def test_preferred_locale(header: str | None, expected: str | None) -> None:
    assert preferred_locale(header) == expected


@pytest.mark.parametrize("code", sorted(MESSAGES))
def test_every_code_has_both_languages_and_no_unfilled_placeholder(code: str) -> None:
    params = {
        key: f"<{key}>"
        for key in (
            "mailbox",
            "tenant",
            "client_id",
            "error",
            "retry_after",
            "employee",
            "count",
            "expires_at",
            "days",
        )
    }
    params["reason"] = "<reason>"
    german, english = message(code, "de", params), message(code, "en", params)
    assert german != english
    # A placeholder without a value renders as "?".
    assert "?" not in german and "?" not in english
    assert "{" not in german and "{" not in english
