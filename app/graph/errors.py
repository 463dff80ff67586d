"""Exceptions of the Graph client, and the one place that classifies a Graph or Entra failure.

GraphError               code, message, status, request_id, client_request_id, and the
│                        queue's retry protocol: `permanent`, `retry_after`, `throttles_mailbox`
├── Throttled            429; `retry_after` seconds (float); `concurrency` (ApplicationThrottled);
│                        `throttles_mailbox`: every request to the mailbox waits as long
├── Transient            5xx, timeouts, resets; optional `retry_after`; `sent`
├── MailboxNotFound      ErrorInvalidUser, ResourceNotFound on a user, MailboxNotEnabledForRESTAPI
├── AccessDenied         403; `reason`: "consent_missing" or "access_policy"
├── AuthenticationFailed AADSTS errors or a token Graph keeps refusing; `kind`, `aadsts_code`
├── ItemNotFound         the event (or subscription) is gone: ErrorItemNotFound, 404
├── PreconditionFailed   412: a stale If-Match (ErrorIrresolvableConflict)
├── SyncStateNotFound    410 / syncStateNotFound / resyncRequired on delta: resync from scratch
└── UnexpectedGraphError anything else, with Graph's code and message

`permanent`: retrying the same call cannot help (`retryable` is its inverse). The job queue
(app/queue/retry.py) reads the three protocol attributes by duck typing, so a job handler lets
these errors propagate as they are.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Literal

import httpx

from app.retry_after import parse_retry_after as parse_retry_after

#: Used when a 429/503 carries no usable Retry-After (the Graph SDKs' RetryHandler default).
DEFAULT_RETRY_AFTER = 3.0

Target = Literal["user", "events", "event", "delta", "subscription", "batch", "other"]
AccessDeniedReason = Literal["consent_missing", "access_policy"]
AuthFailureKind = Literal[
    "invalid_secret", "expired_secret", "app_not_found", "tenant_not_found", "other"
]

AADSTS_KINDS: dict[int, AuthFailureKind] = {
    7000215: "invalid_secret",
    7000222: "expired_secret",
    700016: "app_not_found",
    90002: "tenant_not_found",
}


class GraphError(Exception):
    """A Graph or token call failed; carries what the sync history shows."""

    permanent: bool = True
    #: Seconds Graph asked us to wait (Retry-After) before the call is made again, if it said.
    retry_after: float | None = None
    #: True when the wait applies to every call to the mailbox, not only this one's retry.
    throttles_mailbox: bool = False

    def __init__(
        self,
        message: str,
        *,
        code: str | None = None,
        status: int | None = None,
        request_id: str | None = None,
        client_request_id: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status = status
        self.request_id = request_id
        self.client_request_id = client_request_id

    @property
    def retryable(self) -> bool:
        return not self.permanent

    def __str__(self) -> str:
        head = " ".join(str(part) for part in (self.status, self.code) if part is not None)
        ids = f" (request-id {self.request_id})" if self.request_id else ""
        return f"{head}: {self.message}{ids}" if head else f"{self.message}{ids}"


class Throttled(GraphError):
    """429: wait `retry_after` seconds; `concurrency` when the mailbox's 4-request limit was hit."""

    permanent = False
    # Outlook counts its limits per app and mailbox: the mailbox's other calls would be refused.
    throttles_mailbox = True

    def __init__(self, message: str, *, retry_after: float, concurrency: bool, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after: float = retry_after
        self.concurrency = concurrency


class Transient(GraphError):
    """Server or network trouble; `sent` is False only when the request surely never left."""

    permanent = False

    def __init__(
        self, message: str, *, retry_after: float | None = None, sent: bool = True, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.sent = sent


class MailboxNotFound(GraphError):
    """The mailbox address is unknown, mistyped, or has no Exchange Online mailbox."""

    def __init__(self, message: str, *, mailbox: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.mailbox = mailbox


class AccessDenied(GraphError):
    """403: admin consent for Calendars.ReadWrite missing, or an application access policy."""

    def __init__(self, message: str, *, reason: AccessDeniedReason, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reason = reason


class AuthenticationFailed(GraphError):
    """No usable token: bad/expired secret, unknown app or tenant, or another AADSTS error."""

    def __init__(
        self, message: str, *, kind: AuthFailureKind, aadsts_code: int | None = None, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.kind = kind
        self.aadsts_code = aadsts_code
        # Unknown AADSTS errors may be passing; the four known kinds need an admin.
        self.permanent = kind != "other"


class ItemNotFound(GraphError):
    """The event (or subscription) does not exist; on delete the caller treats it as success."""


class PreconditionFailed(GraphError):
    """412: the event changed since the changeKey given in If-Match."""


class SyncStateNotFound(GraphError):
    """The delta token is gone or invalid: start a full resync."""


class UnexpectedGraphError(GraphError):
    """Any other failure; 4xx are permanent, anything else is retried unless said otherwise."""

    def __init__(self, message: str, *, permanent: bool | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        status = self.status
        self.permanent = (
            permanent if permanent is not None else status is not None and 400 <= status < 500
        )


def _error_body(body: Any) -> tuple[str | None, str, Mapping[str, Any]]:
    """(code, message, innerError) from Graph's `{"error": {...}}` envelope, tolerating junk."""
    error = body.get("error") if isinstance(body, Mapping) else None
    if not isinstance(error, Mapping):
        return None, "", {}
    inner = error.get("innerError") or error.get("innererror") or {}
    code = error.get("code")
    message = error.get("message")
    return (
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else "",
        inner if isinstance(inner, Mapping) else {},
    )


_ACCESS_CODES = frozenset({"ErrorAccessDenied", "accessDenied", "Authorization_RequestDenied"})
_POLICY_MARKERS = ("access to odata is disabled", "accesspolicy", "[raop]")
_MAILBOX_CODES = frozenset({"ErrorInvalidUser", "MailboxNotEnabledForRESTAPI"})
_RESOURCE_CODES = frozenset({"ResourceNotFound", "Request_ResourceNotFound"})
_ITEM_CODES = frozenset({"ErrorItemNotFound", "itemNotFound"})
_SYNC_CODES = frozenset({"syncStateNotFound", "resyncRequired"})


def error_from_response(
    response: httpx.Response,
    *,
    target: Target,
    mailbox: str | None = None,
    client_request_id: str | None = None,
    now: datetime | None = None,
) -> GraphError:
    """Classify a non-2xx Graph response (decoded JSON body or not) into the tree above."""
    try:
        body: Any = response.json()
    except ValueError:
        body = None
    return error_from_parts(
        response.status_code,
        response.headers,
        body,
        target=target,
        mailbox=mailbox,
        client_request_id=client_request_id,
        now=now,
    )


def error_from_parts(
    status: int,
    headers: Mapping[str, str],
    body: Any,
    *,
    target: Target,
    mailbox: str | None = None,
    client_request_id: str | None = None,
    now: datetime | None = None,
) -> GraphError:
    """Classify a status, headers and JSON body (also used for `$batch` items)."""
    lower = {key.lower(): value for key, value in headers.items()}
    code, message, inner = _error_body(body)
    ids: dict[str, Any] = {
        "code": code,
        "status": status,
        "request_id": lower.get("request-id") or _str(inner.get("request-id")),
        "client_request_id": lower.get("client-request-id")
        or _str(inner.get("client-request-id"))
        or client_request_id,
    }
    text = message or f"HTTP {status}"
    retry_after = parse_retry_after(lower.get("retry-after"), now=now)

    if status == 429:
        return Throttled(
            text,
            retry_after=DEFAULT_RETRY_AFTER if retry_after is None else retry_after,
            concurrency=code == "ApplicationThrottled",
            **ids,
        )
    if code in _SYNC_CODES or (status == 410 and target == "delta"):
        return SyncStateNotFound(text, **ids)
    if status >= 500:
        return Transient(text, retry_after=retry_after, **ids)
    if status == 412:
        return PreconditionFailed(text, **ids)
    if status == 401:
        # Reached only after the auth flow's one refresh: Graph rejects a fresh token.
        return AuthenticationFailed(text, kind="other", **ids)
    if status == 403 and (code in _ACCESS_CODES or code == "extensionError"):
        policy = code == "extensionError" or any(m in message.lower() for m in _POLICY_MARKERS)
        return AccessDenied(text, reason="access_policy" if policy else "consent_missing", **ids)
    if code in _MAILBOX_CODES or (
        code in _RESOURCE_CODES and target in ("user", "events", "delta")
    ):
        who = mailbox or "?"
        readable = (
            f"User {who} is invalid: it does not exist in the organization or the address is "
            f"mistyped ({code}: {text})"
            if code != "MailboxNotEnabledForRESTAPI"
            else f"User {who} has no Exchange Online mailbox usable through Graph ({code}: {text})"
        )
        return MailboxNotFound(readable, mailbox=mailbox, **ids)
    if code in _ITEM_CODES or (status == 404 and target in ("event", "subscription")):
        return ItemNotFound(text, **ids)
    return UnexpectedGraphError(text, **ids)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


_AADSTS = re.compile(r"AADSTS(\d+)")


def error_from_token_result(result: Mapping[str, Any]) -> AuthenticationFailed:
    """Classify MSAL's error dict (`error`, `error_description`, `error_codes`) by AADSTS code."""
    description = str(result.get("error_description") or result.get("error") or "token error")
    codes = result.get("error_codes")
    aadsts: int | None = None
    if isinstance(codes, list) and codes and isinstance(codes[0], int):
        aadsts = codes[0]
    elif match := _AADSTS.search(description):
        aadsts = int(match.group(1))
    # Keep the AADSTS line, drop Entra's trace/correlation/timestamp lines from the message.
    first_line = description.splitlines()[0].strip() if description else description
    return AuthenticationFailed(
        first_line,
        kind=AADSTS_KINDS.get(aadsts, "other") if aadsts is not None else "other",
        aadsts_code=aadsts,
        code=str(result.get("error")) if result.get("error") else None,
        status=None,
        request_id=_str(result.get("trace_id")),
        client_request_id=_str(result.get("correlation_id")),
    )
