"""The `CALBRIDGE_BOOKINGTIME__*` settings: defaults, names, and the one-line error a bad value
gives at start."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from app.config import Settings, describe_validation_error


def _settings() -> Settings:
    return Settings(_env_file=None)  # type: ignore[call-arg]


def test_defaults_are_bookingtimes_own(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("API_URL", "AUTH_URL", "LOCALE", "POLL_SECONDS", "TIMEOUT_SECONDS"):
        monkeypatch.delenv(f"CALBRIDGE_BOOKINGTIME__{name}", raising=False)
    bookingtime = _settings().bookingtime
    assert bookingtime.api_url == "https://api.bookingtime.com/app/v3/"
    assert bookingtime.auth_url == "https://auth.bookingtime.com/oauth/token"
    assert bookingtime.locale == "de"
    assert bookingtime.poll_seconds == 60
    assert bookingtime.timeout_seconds == 15


def test_environment_names(monkeypatch: pytest.MonkeyPatch) -> None:
    env = {
        "CALBRIDGE_BOOKINGTIME__API_URL": "https://127.0.0.1:8443/bookingtime/app/v3",
        "CALBRIDGE_BOOKINGTIME__AUTH_URL": "https://127.0.0.1:8443/bookingtime/oauth/token",
        "CALBRIDGE_BOOKINGTIME__LOCALE": "en",
        "CALBRIDGE_BOOKINGTIME__POLL_SECONDS": "120",
        "CALBRIDGE_BOOKINGTIME__TIMEOUT_SECONDS": "30",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    bookingtime = _settings().bookingtime
    # The locale is appended to the base: a missing final slash is added.
    assert bookingtime.api_url == "https://127.0.0.1:8443/bookingtime/app/v3/"
    assert bookingtime.auth_url == "https://127.0.0.1:8443/bookingtime/oauth/token"
    assert (bookingtime.locale, bookingtime.poll_seconds, bookingtime.timeout_seconds) == (
        "en",
        120,
        30,
    )


@pytest.mark.parametrize(
    ("variable", "value", "fragment"),
    [
        ("API_URL", "api.bookingtime.com/app/v3/", "not an absolute http(s) URL"),
        ("API_URL", "ftp://api.bookingtime.com/app/v3/", "not an absolute http(s) URL"),
        ("AUTH_URL", "http://auth.bookingtime.com/oauth/token", "must use https"),
        ("AUTH_URL", "https://auth.bookingtime.com/oauth/token?x=1", "must not carry a query"),
        ("LOCALE", "de/../..", "not a locale"),
        ("POLL_SECONDS", "0", "greater than or equal to 5"),
        ("TIMEOUT_SECONDS", "-1", "greater than 0"),
    ],
)
def test_a_bad_value_is_one_line_naming_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, fragment: str
) -> None:
    monkeypatch.setenv(f"CALBRIDGE_BOOKINGTIME__{variable}", value)
    with pytest.raises(ValidationError) as refused:
        _settings()
    line = describe_validation_error(refused.value)
    assert line.startswith(f"CALBRIDGE_BOOKINGTIME__{variable}={value!r}: ")
    assert fragment in line and "\n" not in line


def test_plain_http_is_allowed_on_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALBRIDGE_BOOKINGTIME__AUTH_URL", "http://127.0.0.1:4101/oauth/token")
    assert _settings().bookingtime.auth_url == "http://127.0.0.1:4101/oauth/token"


def test_the_group_as_one_variable_says_how_to_set_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALBRIDGE_BOOKINGTIME", "[1]")
    with pytest.raises(ValidationError) as refused:
        _settings()
    assert "CALBRIDGE_BOOKINGTIME__KNOB=value" in describe_validation_error(refused.value)
