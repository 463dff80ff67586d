"""A failed token request is logged, and neither its line nor the error carries the app's
secret or any token: at DEBUG, with httpx's own loggers on, raw and as formatted."""

from __future__ import annotations

import io
import logging
from collections.abc import Iterator
from urllib.parse import parse_qsl

import httpx
import pytest

from app import logs
from app.bookingtime_api import BookingtimeError, CredentialsRefused, OrganizationNotPermitted
from tests.bookingtime_api.conftest import MakeClient, Setup
from tests.test_logs import saved_logging


@pytest.fixture
def output() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    with saved_logging():
        handler = logs.build_handler(stream, "json")
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.DEBUG)
        for name in logs.CHATTY_LOGGERS:
            logging.getLogger(name).setLevel(logging.DEBUG)
        yield stream
        root.removeHandler(handler)


def _capture_credentials(http: httpx.AsyncClient, found: set[str]) -> None:
    """Every secret and token that crosses the wire, as sent and as answered."""

    async def on_request(request: httpx.Request) -> None:
        if request.url.path.endswith("/oauth/token"):
            form = dict(parse_qsl(request.content.decode()))
            found.update(form[k] for k in ("client_secret", "refresh_token") if k in form)
        if "authorization" in request.headers:
            found.add(request.headers["authorization"].removeprefix("Bearer "))

    async def on_response(response: httpx.Response) -> None:
        if response.request.url.path.endswith("/oauth/token"):
            body = (await response.aread()).decode()
            if response.status_code == 200:
                found.update(v for k, v in response.json().items() if k.endswith("_token"))
            assert "secret" not in body  # the emulator echoes nothing either

    http.event_hooks["request"].append(on_request)
    http.event_hooks["response"].append(on_response)


async def test_a_failed_token_request_logs_no_secret_or_token(
    http: httpx.AsyncClient,
    make_client: MakeClient,
    setup: Setup,
    output: io.StringIO,
    caplog: pytest.LogCaptureFixture,
) -> None:
    found: set[str] = set()
    _capture_credentials(http, found)
    wrong_secret = "wrongSecretValue0123456789Zq"
    with pytest.raises(CredentialsRefused) as refused:
        await make_client(secret=wrong_secret).list_employees(setup.org)
    # A refresh grant the auth server refuses: it carried the (valid) refresh token.
    stranger = setup.control.add_organization()
    client = make_client()
    await client.list_employees(setup.org)
    with pytest.raises(OrganizationNotPermitted) as denied:
        await client.list_employees(stranger)

    assert wrong_secret in found and setup.secret in found
    assert len(found) == 4  # two secrets, a refresh token, an access token
    lines = output.getvalue().splitlines()
    failures = [line for line in lines if "bookingtime token request failed" in line]
    assert len(failures) == 2
    assert "grant=client_credentials" in failures[0] and "invalid_client" in failures[0]
    assert "grant=refresh_token" in failures[1] and stranger in failures[1]
    raw = [r.getMessage() for r in caplog.records] + [str(refused.value), str(denied.value)]
    errors: list[BookingtimeError] = [refused.value, denied.value]
    for credential in found:
        assert credential not in output.getvalue()
        assert not any(credential in text for text in raw)  # not even before redaction
        assert not any(credential in repr(vars(error)) for error in errors)


@pytest.mark.parametrize(
    "text",
    [
        "grant_type=refresh_token&client_id=70abc&refresh_token=opaqueRefreshValue1234",
        "client_secret=plainSecretValue0123456789",
        '{"access_token": "opaqueAccessTokenValue1234", "token_type": "Bearer"}',
        "Authorization: Bearer opaqueAccessTokenValue1234",
        "eyJ0eXAiOiJKV1QiLCJhbGciOiJSUzI1NiJ9.eyJzdWIiOiI3MCJ9.c2lnbmF0dXJl",
    ],
)
def test_redaction_covers_bookingtimes_tokens_and_secret(text: str) -> None:
    # The last line of defence, should a body or form ever reach a log line.
    redacted = logs.redact(text)
    assert logs.REDACTED in redacted
    for value in (
        "opaqueRefreshValue1234",
        "plainSecretValue0123456789",
        "opaqueAccessTokenValue1234",
        "c2lnbmF0dXJl",
    ):
        assert value not in redacted
