"""Input rules of connection and employee bodies, without HTTP."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from app.connections.employee_schemas import EmployeeIn
from app.connections.mailboxes import normalize_mailbox
from app.connections.schemas import ConnectionIn
from app.connections.service import generate_webhook_secret

BASE: dict[str, Any] = {
    "tenant": "contoso.com",
    "client_id": "6731de76-14a6-49ae-97bc-6eba6914391e",
    "client_secret": "s3cret",
}


def whsec(size: int) -> str:
    return "whsec_" + base64.b64encode(bytes(range(size))).decode()


def test_generated_webhook_secret_is_standard_webhooks_form() -> None:
    secret = generate_webhook_secret()
    assert re.fullmatch(r"whsec_[A-Za-z0-9+/]+={0,2}", secret)
    assert len(base64.b64decode(secret.removeprefix("whsec_"), validate=True)) == 32
    assert generate_webhook_secret() != secret
    ConnectionIn.model_validate({**BASE, "webhook_secret": secret})


@pytest.mark.parametrize("size", [24, 32, 64])
def test_webhook_secret_sizes_accepted(size: int) -> None:
    body = ConnectionIn.model_validate({**BASE, "webhook_secret": whsec(size)})
    assert body.webhook_secret is not None
    assert body.webhook_secret.get_secret_value() == whsec(size)


@pytest.mark.parametrize(
    "secret",
    [
        whsec(23),
        whsec(65),
        whsec(32).removeprefix("whsec_"),
        "whsec_",
        "whsec_not*base64!",
        "whsec_" + base64.urlsafe_b64encode(b"\xfb\xff" * 16).decode(),  # url-safe alphabet
        "WHSEC_" + whsec(32).removeprefix("whsec_"),
        "",
    ],
)
def test_webhook_secret_refused(secret: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ConnectionIn.model_validate({**BASE, "webhook_secret": secret})
    assert caught.value.errors()[0]["loc"] == ("webhook_secret",)
    assert "input_value" not in str(caught.value)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2027-05-31", datetime(2027, 5, 31, tzinfo=UTC)),
        ("2027-05-31T12:00:00Z", datetime(2027, 5, 31, 12, tzinfo=UTC)),
        ("2027-05-31T00:00:00+02:00", datetime(2027, 5, 30, 22, tzinfo=UTC)),
        (None, None),
    ],
)
def test_secret_expiry_is_utc(given: str | None, expected: datetime | None) -> None:
    body = ConnectionIn.model_validate({**BASE, "client_secret_expires_at": given})
    assert body.expires_at_utc == expected
    if expected is not None:
        assert body.expires_at_utc is not None and body.expires_at_utc.tzinfo is UTC


@pytest.mark.parametrize(
    "given", ["2027-05-31T00:00:00", "2027-05-31T12:00", "31.05.2027", "soon", "2027-02-30"]
)
def test_secret_expiry_refuses_naive_and_garbage(given: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ConnectionIn.model_validate({**BASE, "client_secret_expires_at": given})
    assert {err["loc"][0] for err in caught.value.errors()} == {"client_secret_expires_at"}


def test_secrets_are_stripped_and_bounded() -> None:
    body = ConnectionIn.model_validate({**BASE, "client_secret": "  abc\n"})
    assert body.client_secret is not None and body.client_secret.get_secret_value() == "abc"
    for bad in ["", "   ", "x" * 1025]:
        with pytest.raises(ValidationError):
            ConnectionIn.model_validate({**BASE, "client_secret": bad})
    ConnectionIn.model_validate({**BASE, "client_secret": "x" * 1024})


def test_secrets_are_not_in_repr() -> None:
    body = ConnectionIn.model_validate({**BASE, "webhook_secret": whsec(32)})
    assert "s3cret" not in repr(body)
    assert whsec(32) not in repr(body)


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        ("Max.Mustermann@Contoso.COM", "max.mustermann@contoso.com"),
        ("  d.wellt@organization.com ", "d.wellt@organization.com"),
        # The domain is stored in its ASCII (punycode) form, whichever form it was given in.
        ("jörg@bücher.example", "jörg@xn--bcher-kva.example"),
        ("jörg@xn--bcher-kva.example", "jörg@xn--bcher-kva.example"),
        ("JÖRG@BÜCHER.EXAMPLE", "jörg@xn--bcher-kva.example"),
        # NFKC: fullwidth letters, the fullwidth at sign and ligatures become the plain ones.
        (
            "\uff4d\uff41\uff58\uff20\uff43\uff4f\uff4e\uff54\uff4f\uff53\uff4f.example",
            "max@contoso.example",
        ),
        ("\ufb01ona@contoso.example", "fiona@contoso.example"),
        # One script, or the mixes names are written in, are fine.
        ("ελένη@contoso.example", "ελένη@contoso.example"),
        ("иван2@contoso.example", "иван2@contoso.example"),
        ("山田たろう@contoso.example", "山田たろう@contoso.example"),
        ("yamada.たろう@contoso.example", "yamada.たろう@contoso.example"),
        ("max.müller@contoso.example", "max.müller@contoso.example"),
    ],
)
def test_mailbox_normalised(given: str, stored: str) -> None:
    assert normalize_mailbox(given) == stored
    assert EmployeeIn.model_validate({"mailbox": given}).mailbox == stored


@pytest.mark.parametrize(
    "given", ["d.wellt", "d.wellt@", "@contoso.com", "a@b@contoso.com", "a b@contoso.com", "a@x"]
)
def test_mailbox_refused(given: str) -> None:
    with pytest.raises(ValidationError) as caught:
        EmployeeIn.model_validate({"mailbox": given})
    assert caught.value.errors()[0]["loc"] == ("mailbox",)


@pytest.mark.parametrize(
    ("given", "named"),
    [
        ("m\u0430x@contoso.example", ["U+0430 CYRILLIC SMALL LETTER A"]),
        (
            "\u0440\u0430ypal@contoso.example",
            ["U+0440 CYRILLIC SMALL LETTER ER", "U+0430 CYRILLIC SMALL LETTER A"],
        ),
        ("M\u0391X@contoso.example", ["U+0391 GREEK CAPITAL LETTER ALPHA"]),
        ("max@c\u043entoso.example", ["U+043E CYRILLIC SMALL LETTER O"]),
    ],
)
def test_mailbox_mixing_scripts_is_refused_naming_the_characters(
    given: str, named: list[str]
) -> None:
    with pytest.raises(ValidationError) as caught:
        EmployeeIn.model_validate({"mailbox": given})
    [error] = caught.value.errors()
    assert error["loc"] == ("mailbox",)
    for name in named:
        assert name in error["msg"]
    assert given.split("@")[0] not in error["msg"]


@pytest.mark.parametrize(
    "given",
    ["9999-12-31", "9999-12-31T23:00:00-05:00", "0001-01-01", "2100-01-01", "1999-12-31"],
)
def test_secret_expiry_out_of_range_is_refused(given: str) -> None:
    with pytest.raises(ValidationError) as caught:
        ConnectionIn.model_validate({**BASE, "client_secret_expires_at": given})
    [error] = caught.value.errors()
    assert error["loc"] == ("client_secret_expires_at",)
    assert "2000-01-01" in error["msg"]


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("2000-01-01", datetime(2000, 1, 1, tzinfo=UTC)),
        ("2099-12-31T23:59:59Z", datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_secret_expiry_range_edges_accepted(given: str, expected: datetime) -> None:
    body = ConnectionIn.model_validate({**BASE, "client_secret_expires_at": given})
    assert body.expires_at_utc == expected
