"""Tenant normalisation: the three accepted forms, and everything else refused with the reason."""

from __future__ import annotations

import pytest

from app.connections.tenant import ACCEPTED_FORMS, InvalidTenantError, normalize_tenant

GUID = "72f988bf-86f1-41af-91ab-2d7cd011db47"


@pytest.mark.parametrize(
    ("given", "stored"),
    [
        (GUID, GUID),
        (GUID.upper(), GUID),
        (f"  {GUID}\n", GUID),
        ("{" + GUID.upper() + "}", GUID),
        ("contoso.onmicrosoft.com", "contoso.onmicrosoft.com"),
        ("Contoso.OnMicrosoft.COM", "contoso.onmicrosoft.com"),
        ("contoso.com.", "contoso.com"),
        ("sub-domain.contoso.co.uk", "sub-domain.contoso.co.uk"),
        (f"https://login.microsoftonline.com/{GUID}", GUID),
        (f"https://login.microsoftonline.com/{GUID.upper()}/", GUID),
        (f"https://login.microsoftonline.com/{GUID}/v2.0", GUID),
        (f"https://login.microsoftonline.com/{GUID}/v2.0/", GUID),
        (f"https://login.microsoftonline.com/{GUID}/oauth2/v2.0/token", GUID),
        (f"https://login.microsoftonline.com/{GUID}/oauth2/v2.0/authorize?x=1#y", GUID),
        ("https://login.microsoftonline.com/Contoso.com/v2.0", "contoso.com"),
        ("HTTPS://LOGIN.MICROSOFTONLINE.COM/contoso.onmicrosoft.com", "contoso.onmicrosoft.com"),
        ("https://login.microsoftonline.com:443/contoso.com", "contoso.com"),
        ("https://login.windows.net/contoso.com/", "contoso.com"),
    ],
)
def test_accepted_forms_are_normalised(given: str, stored: str) -> None:
    assert normalize_tenant(given) == stored


@pytest.mark.parametrize(
    ("given", "reason"),
    [
        ("common", "multi-tenant alias"),
        ("Organizations", "multi-tenant alias"),
        ("consumers", "multi-tenant alias"),
        ("https://login.microsoftonline.com/common/v2.0", "multi-tenant alias"),
        ("https://login.microsoftonline.com/organizations", "multi-tenant alias"),
        ("9188040d-6c67-4c5b-b112-36a304b66dad", "personal Microsoft accounts"),
        ("00000000-0000-0000-0000-000000000000", "all-zero"),
        ("", "empty"),
        ("   ", "empty"),
        ("contoso", "neither a GUID nor a domain"),
        ("hello world", "neither a GUID nor a domain"),
        ("-contoso.com", "neither a GUID nor a domain"),
        ("contoso..com", "neither a GUID nor a domain"),
        ("contoso.123", "neither a GUID nor a domain"),
        ("72f988bf86f141af91ab2d7cd011db47", "neither a GUID nor a domain"),
        ("72f988bf-86f1-41af-91ab-2d7cd011db4", "neither a GUID nor a domain"),
        ("user@contoso.com", "neither a GUID nor a domain"),
        ("login.microsoftonline.com/contoso.com", "starts with https://"),
        ("login.microsoftonline.com", "login host"),
        ("http://login.microsoftonline.com/contoso.com", "must start with https://"),
        ("ftp://login.microsoftonline.com/contoso.com", "must start with https://"),
        ("https://evil.example/contoso.com", "not a Microsoft Entra login host"),
        ("https://login.microsoftonline.com.evil.example/contoso.com", "not a Microsoft Entra"),
        ("https://login.microsoftonline.com:8443/contoso.com", "not a Microsoft Entra"),
        ("https://login.microsoftonline.com/", "names no tenant"),
        ("https://login.microsoftonline.com", "names no tenant"),
        ("https://login.microsoftonline.com/not a tenant", "neither a GUID nor a domain"),
        ("https://[::1/contoso.com", "not a valid URL"),
    ],
)
def test_everything_else_is_refused_with_the_accepted_forms(given: str, reason: str) -> None:
    with pytest.raises(InvalidTenantError) as caught:
        normalize_tenant(given)
    assert reason in caught.value.reason
    message = str(caught.value)
    assert ACCEPTED_FORMS in message
    for form in ("GUID", "contoso.onmicrosoft.com", "https://login.microsoftonline.com/"):
        assert form in message


def test_configured_authority_host_is_accepted() -> None:
    hosts = ("https://login.microsoftonline.com", "https://127.0.0.1:8443/")
    assert normalize_tenant("https://127.0.0.1:8443/contoso.com/v2.0", authority_hosts=hosts) == (
        "contoso.com"
    )
    with pytest.raises(InvalidTenantError):
        normalize_tenant("https://127.0.0.1:9443/contoso.com", authority_hosts=hosts)
