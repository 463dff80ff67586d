"""Entra tenant normalisation (pure): a GUID, a domain or an authority URL becomes the tenant
calbridge stores, a lowercase GUID or a lowercase domain without a trailing dot.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from urllib.parse import urlsplit

GLOBAL_AUTHORITY_HOSTS = ("https://login.microsoftonline.com", "https://login.windows.net")

ACCEPTED_FORMS = (
    "tenant must be one of: the directory (tenant) ID, a GUID such as "
    "72f988bf-86f1-41af-91ab-2d7cd011db47; a domain of the tenant such as "
    "contoso.onmicrosoft.com or contoso.com; or the authority URL "
    "https://login.microsoftonline.com/<tenant ID or domain>"
)

# Multi-tenant aliases: a single-tenant app registration needs its own tenant.
_ALIASES = frozenset({"common", "organizations", "consumers"})
# The tenant behind `consumers` (personal Microsoft accounts) has no organisation mailboxes.
_CONSUMERS_TENANT_ID = "9188040d-6c67-4c5b-b112-36a304b66dad"

_GUID = re.compile(r"\{?[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\}?")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?")
_TLD = re.compile(r"[a-z]{2,63}|xn--[a-z0-9-]{1,59}")

_Authority = tuple[str, int]


class InvalidTenantError(ValueError):
    """The value is not a tenant calbridge can use; the message says why and what is accepted."""

    def __init__(self, reason: str) -> None:
        super().__init__(f"{reason}; {ACCEPTED_FORMS}")
        self.reason = reason


def normalize_tenant(value: str, *, authority_hosts: Iterable[str] = GLOBAL_AUTHORITY_HOSTS) -> str:
    """The stored form of a tenant given as a GUID, a domain or an `https://` URL on one of
    `authority_hosts` (path after the tenant ignored); raises InvalidTenantError otherwise."""
    hosts = {authority for url in authority_hosts if (authority := _authority(url)) is not None}
    text = value.strip()
    if not text:
        raise InvalidTenantError("tenant is empty")
    if "://" in text:
        text = _tenant_from_url(text, hosts)
    elif "/" in text:
        raise InvalidTenantError(
            f"{text!r} is neither a GUID nor a domain (an authority URL starts with https://)"
        )
    return _normalize_bare(text, hosts)


def _authority(url: str) -> _Authority | None:
    """(hostname, port) of an https URL, or None when it is not one."""
    try:
        parsed = urlsplit(url)
        hostname, port = parsed.hostname, parsed.port
    except ValueError:
        return None
    if parsed.scheme.lower() != "https" or not hostname:
        return None
    return hostname.rstrip("."), port or 443


def _tenant_from_url(text: str, hosts: set[_Authority]) -> str:
    try:
        parsed = urlsplit(text)
    except ValueError as exc:
        raise InvalidTenantError(f"{text!r} is not a valid URL") from exc
    if parsed.scheme.lower() != "https":
        raise InvalidTenantError("the authority URL must start with https://")
    if _authority(text) not in hosts:
        raise InvalidTenantError(f"{parsed.netloc!r} is not a Microsoft Entra login host")
    # Whatever follows the tenant (`/v2.0`, `/oauth2/v2.0/token`, `/`) is copied along by admins.
    segments = [segment for segment in parsed.path.split("/") if segment]
    if not segments:
        raise InvalidTenantError("the authority URL names no tenant after the host")
    return segments[0]


def _normalize_bare(text: str, hosts: set[_Authority]) -> str:
    lowered = text.lower()
    if lowered in _ALIASES:
        raise InvalidTenantError(
            f"{lowered!r} is a multi-tenant alias: give the tenant of your own "
            "single-tenant app registration"
        )
    if _GUID.fullmatch(lowered):
        guid = uuid.UUID(lowered.strip("{}"))
        if str(guid) == _CONSUMERS_TENANT_ID:
            raise InvalidTenantError("that GUID is the tenant of personal Microsoft accounts")
        if guid.int == 0:
            raise InvalidTenantError("the all-zero GUID is not a tenant")
        return str(guid)
    domain = lowered.removesuffix(".")
    labels = domain.split(".")
    if (
        len(domain) > 253
        or len(labels) < 2
        or not all(_LABEL.fullmatch(label) for label in labels)
        or not _TLD.fullmatch(labels[-1])
    ):
        raise InvalidTenantError(f"{text!r} is neither a GUID nor a domain")
    if (domain, 443) in hosts:
        raise InvalidTenantError(f"{domain!r} is the login host: append /<tenant> to it")
    return domain
