"""The sync history's stable codes and their readable German and English messages (the
catalogue by domain in app.history.catalogue), and the one mapping from a Graph failure to
(code, params).

A message's params may name other texts by code, each rendered in the same language: the
`reason_code` param fills `{reason}` and `field_code` fills `{field}`. So a message that quotes
another (a subscription failing because the mailbox is invalid, an appointment refused for a
missing time) is in one language throughout, and can be rendered again in the other.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from functools import cache
from typing import Any

from app.graph.errors import (
    AccessDenied,
    AuthenticationFailed,
    GraphError,
    MailboxNotFound,
    Throttled,
    Transient,
)
from app.history.catalogue import Locale as Locale
from app.history.catalogue import Texts
from app.history.catalogue.appointments import APPOINTMENTS, REASONS
from app.history.catalogue.failures import FAILURES
from app.history.catalogue.subscriptions import SUBSCRIPTIONS

#: Every code a sync history record (or an admin answer) can carry, with its two texts.
MESSAGES: Texts = {**FAILURES, **APPOINTMENTS, **SUBSCRIPTIONS}
# Codes a param may name besides those: the parts of a message, never a record's own code.
_TEXTS: Texts = {**MESSAGES, **REASONS}
# The params that name another text, and the field that text fills.
_NESTED = {"reason_code": "reason", "field_code": "field"}


def as_locale(locale: str) -> Locale:
    """`en` for any English tag, else `de` (calbridge's default language)."""
    return "en" if locale.lower().startswith("en") else "de"


class _Blank(dict[str, Any]):
    def __missing__(self, key: str) -> str:
        return "?"


def _render(code: str, lang: Locale, params: Mapping[str, Any], *, strict: bool) -> str | None:
    texts = _TEXTS.get(code)
    if texts is None:
        return None
    template = texts[lang]
    values = dict(params)
    for key, field in _NESTED.items():
        part = params.get(key)
        if not isinstance(part, str) or field not in _fields(template):
            continue
        rest = {name: value for name, value in params.items() if name != key}
        text = _render(part, lang, rest, strict=strict)
        if text is None and strict:
            return None
        if text is not None:
            values[field] = text
    if not strict:
        return template.format_map(_Blank(values))
    try:
        return template.format_map(values)
    except KeyError:
        return None


@cache
def _fields(template: str) -> frozenset[str]:
    return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)


def message(code: str, locale: str, params: Mapping[str, Any] | None = None) -> str:
    """The readable message for `code` in `locale` ("de" unless "en"); unknown params are "?"."""
    known = code if code in _TEXTS else "graph_error"
    return _render(known, as_locale(locale), params or {}, strict=False) or ""


def render(code: str, locale: str, params: Mapping[str, Any]) -> str | None:
    """`code`'s message in `locale` when `params` hold every value it needs; None when they do
    not (a record stored before its params were) or the code is unknown: show the stored text."""
    return _render(code, as_locale(locale), params, strict=True)


def has_message(code: str) -> bool:
    """Whether `code` is one of this module's codes (so its message can be rendered anew)."""
    return code in MESSAGES


def preferred_locale(accept_language: str | None) -> Locale | None:
    """The best of calbridge's languages for an `Accept-Language` header (RFC 9110 §12.5.4:
    ranges with q-values, `*` for any); None when the header names none of them."""
    best: tuple[float, int, Locale] | None = None
    for position, item in enumerate((accept_language or "").split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        primary = tag.strip().lower().split("-")[0]
        locale: Locale | None = (
            "de" if primary in ("de", "*") else "en" if primary == "en" else None
        )
        if locale is None or not 0 < quality <= 1:
            continue
        # Higher quality wins; among equals, the earlier range.
        if best is None or (quality, -position) > (best[0], best[1]):
            best = (quality, -position, locale)
    return None if best is None else best[2]


def error_code(
    error: GraphError, *, mailbox: str, tenant: str = "", client_id: str = ""
) -> tuple[str, dict[str, Any]]:
    """The history code and message params for a Graph failure on `mailbox`."""
    params: dict[str, Any] = {"mailbox": mailbox}
    if error.code:
        params["graph_code"] = error.code
    if isinstance(error, MailboxNotFound):
        return "mailbox_invalid", params
    if isinstance(error, AccessDenied):
        code = "consent_missing" if error.reason == "consent_missing" else "access_policy_blocked"
        return code, params
    if isinstance(error, AuthenticationFailed):
        kinds = {
            "invalid_secret": "secret_invalid",
            "expired_secret": "secret_expired",
            "tenant_not_found": "tenant_not_found",
            "app_not_found": "app_not_in_tenant",
        }
        params.update(tenant=tenant, client_id=client_id, error=error.message)
        if error.aadsts_code is not None:
            params["aadsts_code"] = error.aadsts_code
        return kinds.get(error.kind, "auth_failed"), params
    if isinstance(error, Throttled):
        params["retry_after"] = round(error.retry_after, 1)
        return "throttled", params
    if isinstance(error, Transient):
        return "graph_unavailable", params
    params["error"] = error.message
    if error.permanent:
        return "graph_error", params
    return "graph_unavailable", params
