"""Every answer of bookingtime's token endpoint and App API lands in one documented error class,
with the attributes the job queue's retry decision reads. Pure: no I/O."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from app.bookingtime_api.errors import (
    BookingtimeError,
    CredentialsRefused,
    NotFound,
    OrganizationNotPermitted,
    Throttled,
    Transient,
    UnexpectedResponse,
    ValidationFailed,
    error_from_api,
    error_from_token_endpoint,
    parse_retry_after,
)
from app.queue.retry import RetryStrategy
from tests.bookingtime_api import samples
from tests.bookingtime_api.samples import ORG

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
HTML = b"<html><head><title>500 Internal Server Error</title></head><body>nginx</body></html>"


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        ("2.5", 2.5),
        (" 7 ", 7.0),
        ("-3", 0.0),
        ("Mon, 07 Dec 2026 12:01:30 GMT", 90.0),
        ("Mon, 07 Dec 2026 11:00:00 GMT", 0.0),  # in the past: now
        (None, None),
        ("", None),
        ("soon", None),
        ("nan", None),
        ("inf", None),
    ],
)
def test_retry_after_in_seconds_or_as_an_http_date(
    value: str | None, seconds: float | None
) -> None:
    assert parse_retry_after(value, now=NOW) == seconds


def _api(status: int, body: Any, headers: dict[str, str] | None = None) -> BookingtimeError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    decoded = None if isinstance(body, bytes) else body
    return error_from_api(status, headers or {}, decoded, organization_id=ORG, raw=raw, now=NOW)


def test_api_failures_are_classified() -> None:
    validation = _api(400, samples.failure("This value is not valid.", "type"))
    assert isinstance(validation, ValidationFailed) and validation.permanent
    assert validation.parameter == "type"
    assert validation.texts == ("type: This value is not valid.",)
    assert "type: This value is not valid." in str(validation) and str(validation).startswith("400")

    refused = _api(401, samples.failure("The access token has expired."))
    assert isinstance(refused, CredentialsRefused) and refused.permanent

    denied = _api(403, samples.failure("The app is not permitted for this organization."))
    assert isinstance(denied, OrganizationNotPermitted) and denied.organization_id == ORG

    gone = _api(404, samples.failure("Appointment not found."))
    assert isinstance(gone, NotFound) and gone.parameter is None
    unknown_org = _api(404, samples.failure("Organization not found.", "organizationId"))
    assert isinstance(unknown_org, NotFound) and unknown_org.parameter == "organizationId"

    other = _api(405, samples.failure("Method Not Allowed"))
    assert type(other) is UnexpectedResponse and other.permanent
    assert str(other) == "405: bookingtime answered 405: Method Not Allowed"


def test_throttling_honours_retry_after_when_sent() -> None:
    throttled = _api(429, samples.failure("Too many requests."), {"Retry-After": "30"})
    assert isinstance(throttled, Throttled) and throttled.retry_after == 30.0
    dated = _api(429, b"", {"retry-after": "Mon, 07 Dec 2026 12:00:45 GMT"})
    assert isinstance(dated, Throttled) and dated.retry_after == 45.0
    silent = _api(429, samples.failure("Too many requests."))
    assert isinstance(silent, Throttled) and silent.retry_after is None


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, samples.failure("An internal error occurred.")),
        (503, samples.failure("The service is temporarily unavailable.")),
        (500, HTML),
        (502, b"<html>Bad Gateway</html>"),
        (400, b'{"messageList":[{"class":"MESSAGE","type":"fail'),  # cut short
    ],
)
def test_server_errors_and_bodies_that_are_not_json_are_transient(status: int, body: Any) -> None:
    error = _api(status, body, {"Retry-After": "5"})
    assert isinstance(error, Transient) and error.retryable and error.retry_after == 5.0
    if isinstance(body, bytes) and body.startswith(b"<html>"):
        assert body.decode()[:40] in str(error)  # enough of the page to recognise it


def _token(status: int, body: Any, grant: str = "client_credentials") -> BookingtimeError:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    decoded = None if isinstance(body, bytes) else body
    return error_from_token_endpoint(
        status, {}, decoded, grant_type=grant, organization_id=ORG, raw=raw, now=NOW
    )


def test_token_endpoint_failures_are_classified() -> None:
    wrong = _token(
        401, {"error": "invalid_client", "error_description": "Client authentication failed."}
    )
    assert isinstance(wrong, CredentialsRefused) and wrong.code == "invalid_client"
    expired = _token(
        400,
        {"error": "invalid_grant", "error_description": "Unknown or expired refresh token."},
        "refresh_token",
    )
    assert isinstance(expired, CredentialsRefused) and "refresh_token grant" in str(expired)
    denied = _token(
        403, {"error": "access_denied", "error_description": "not permitted"}, "refresh_token"
    )
    assert isinstance(denied, OrganizationNotPermitted)
    assert isinstance(_token(503, {"error": "temporarily_unavailable"}), Transient)
    assert isinstance(_token(400, HTML), Transient)
    assert isinstance(_token(401, HTML), CredentialsRefused)  # the status says enough
    assert isinstance(_token(429, {"error": "too_many_requests"}), Throttled)
    odd = _token(400, {"error": "unsupported_grant_type"})
    assert type(odd) is UnexpectedResponse and odd.permanent


@pytest.mark.parametrize(
    ("error", "outcome", "delay"),
    [
        (CredentialsRefused("x"), "failed", None),
        (OrganizationNotPermitted("x"), "failed", None),
        (NotFound("x"), "failed", None),
        (ValidationFailed("x", parameter="type"), "failed", None),
        (UnexpectedResponse("x", status=405), "failed", None),
        (UnexpectedResponse("x", status=502), "retry", "backoff"),
        (Throttled("x", retry_after=30.0), "retry", 30.0),
        (Throttled("x"), "retry", "backoff"),
        (Transient("x", retry_after=12.0), "retry", 12.0),
        (Transient("x"), "retry", "backoff"),
    ],
)
def test_the_queue_reads_the_retry_protocol(
    error: BookingtimeError, outcome: str, delay: float | str | None
) -> None:
    strategy = RetryStrategy(base_seconds=2.0, random=lambda: 0.0)
    decision = strategy.decide(error, attempt=1, max_attempts=5, now=NOW)
    assert decision.outcome == outcome
    assert decision.throttle_until is None  # bookingtime holds back no mailbox
    if delay == "backoff":
        assert decision.run_at == NOW + timedelta(seconds=1.0)
    elif delay is not None:
        assert decision.run_at == NOW + timedelta(seconds=float(delay))
