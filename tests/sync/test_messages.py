"""The history's messages: Accept-Language negotiation and every code rendered in both languages."""

from __future__ import annotations

import pytest

from app.history.catalogue.appointments import REASONS
from app.history.messages import MESSAGES, message, preferred_locale, render


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
            "kind",
        )
    }
    params["reason"] = "<reason>"
    german, english = message(code, "de", params), message(code, "en", params)
    assert german != english
    # A placeholder without a value renders as "?".
    assert "?" not in german and "?" not in english
    assert "{" not in german and "{" not in english


@pytest.mark.parametrize("code", sorted(REASONS))
def test_every_reason_has_both_languages(code: str) -> None:
    params = {"field_code": "time_start", "value": "<value>", "earliest": "<e>", "latest": "<l>"}
    german, english = render(code, "de", params), render(code, "en", params)
    assert german and english and german != english


def test_a_reason_is_told_in_the_message_s_language() -> None:
    params = {"reason_code": "time_missing", "field_code": "time_end"}
    assert message("invalid_appointment", "de", params) == (
        "Der Termin kann nicht übertragen werden: die Endzeit fehlt"
    )
    assert message("invalid_appointment", "en", params) == (
        "The appointment cannot be synchronised: the appointment has no end time"
    )


def test_render_refuses_what_message_fills_with_question_marks() -> None:
    # A record stored before its params were: the caller shows its stored text instead.
    assert message("subscription_created", "en", {}) == (
        "Change notifications for ? set up (valid until ?)."
    )
    assert render("subscription_created", "en", {"mailbox": "max@contoso.example"}) is None
    assert render("invalid_appointment", "de", {"error": "the appointment ends before"}) is None
    assert render("invalid_appointment", "de", {"reason_code": "no_such_reason"}) is None
    assert render("no_such_code", "de", {}) is None
    assert render("subscription_created", "de", {"mailbox": "m", "expires_at": "x"}) == (
        "Änderungsbenachrichtigungen für m eingerichtet (gültig bis x)."
    )
