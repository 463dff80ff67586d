"""Exceptions of the bookingtime App API client, and the one place that classifies a failure of
bookingtime's token endpoint or App API.

BookingtimeError            message, status, code, organization_id, `texts` and `parameter`
│                           (from messageList), and the queue's retry protocol: `permanent`,
│                           `retry_after`, `throttles_mailbox` (always False: no mailboxes here)
├── CredentialsRefused      the token endpoint refused the client id/secret (or a renewed refresh
│                           token), or the API refused a freshly minted access token
├── OrganizationNotPermitted the app is not permitted for the organisation (403)
├── NotFound                404: the organisation, appointment or other record does not exist
├── ValidationFailed        400 with failure messages; `parameter` names the offending field
├── Throttled               429; `retry_after` from Retry-After (seconds or HTTP date) if sent
├── Transient               5xx, timeouts, connection errors, a body that is not JSON (an HTML
│                           page, JSON cut short); optional `retry_after`; `sent`
├── InvalidRecord           one record (an appointment, ...) has a field calbridge cannot read:
│                           `record_id`, `field`, `value`, `raw`; a window lists it, never fails
└── UnexpectedResponse      anything else, verbatim: status and messageList texts; also a 2xx
                            whose JSON is not the documented shape (no envelope, wrong `class`)

`permanent`: retrying the same call cannot help. The job queue (app/queue/retry.py) reads the
protocol attributes by duck typing, so callers let these errors propagate as they are. No error
carries a secret or a token: messages hold only what bookingtime answered and our own words.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from app.retry_after import parse_retry_after as parse_retry_after

#: Characters of a non-JSON body kept in an error message: enough to recognise a proxy's page.
BODY_EXCERPT = 200


class BookingtimeError(Exception):
    """A call to bookingtime failed; carries what the sync history shows."""

    permanent: bool = True
    #: Seconds bookingtime asked us to wait (Retry-After) before the call is made again.
    retry_after: float | None = None
    #: Read by the queue: a wait that holds back every job of the job's mailbox. Never here.
    throttles_mailbox: bool = False

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        organization_id: str | None = None,
        texts: Sequence[str] = (),
        parameter: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code
        self.organization_id = organization_id
        self.texts = tuple(texts)
        #: The field bookingtime's first failure message names, if any.
        self.parameter = parameter

    @property
    def retryable(self) -> bool:
        return not self.permanent

    def __str__(self) -> str:
        head = " ".join(str(part) for part in (self.status, self.code) if part is not None)
        return f"{head}: {self.message}" if head else self.message


class CredentialsRefused(BookingtimeError):
    """The app's client id or secret is wrong or revoked: an admin has to fix the credentials."""


class OrganizationNotPermitted(BookingtimeError):
    """The app may not access this organisation (bookingtime has to permit it)."""


class NotFound(BookingtimeError):
    """The organisation or record does not exist (any more)."""


class ValidationFailed(BookingtimeError):
    """bookingtime refused the request's content; `parameter` names the field, when it said."""


class Throttled(BookingtimeError):
    """429: call again after `retry_after` seconds when bookingtime said, else back off."""

    permanent = False

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after


class Transient(BookingtimeError):
    """Server or network trouble; `sent` is False only when the request surely never left."""

    permanent = False

    def __init__(
        self, message: str, *, retry_after: float | None = None, sent: bool = True, **kw: Any
    ) -> None:
        super().__init__(message, **kw)
        self.retry_after = retry_after
        self.sent = sent


class InvalidRecord(BookingtimeError):
    """A record whose `field` holds `value`, which calbridge cannot read; `raw` is the record."""

    def __init__(
        self,
        message: str,
        *,
        record_class: str,
        record_id: str | None,
        field: str,
        value: Any,
        raw: Any,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.record_class = record_class
        self.record_id = record_id
        self.field = field
        self.value = value
        self.raw = raw


class UnexpectedResponse(BookingtimeError):
    """Any other answer, verbatim; 4xx and malformed 2xx are permanent, the rest is retried."""

    def __init__(self, message: str, *, permanent: bool | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        status = self.status
        self.permanent = permanent if permanent is not None else status is not None and status < 500


def failure_messages(body: Any) -> list[tuple[str | None, str]]:
    """(parameter, text) of each failure in an envelope's messageList, tolerating junk."""
    messages = body.get("messageList") if isinstance(body, Mapping) else None
    if not isinstance(messages, list):
        return []
    found = []
    for item in messages:
        if not isinstance(item, Mapping) or item.get("type") == "success":
            continue
        parameter, text = item.get("parameter"), item.get("text")
        found.append(
            (
                parameter if isinstance(parameter, str) and parameter else None,
                text if isinstance(text, str) else "",
            )
        )
    return found


def _texts(messages: list[tuple[str | None, str]]) -> list[str]:
    return [f"{p}: {t}" if p else t for p, t in messages if p or t]


def excerpt(body: bytes | str) -> str:
    """The start of a body for a message, on one line."""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    text = " ".join(text.split())
    return text if len(text) <= BODY_EXCERPT else f"{text[:BODY_EXCERPT]}…"


def error_from_api(
    status: int,
    headers: Mapping[str, str],
    body: Any,
    *,
    organization_id: str | None,
    raw: bytes = b"",
    now: datetime | None = None,
) -> BookingtimeError:
    """Classify a non-2xx App API answer; `body` is the decoded JSON, or None if it was not JSON."""
    lower = {key.lower(): value for key, value in headers.items()}
    messages = failure_messages(body)
    texts = _texts(messages)
    shown = "; ".join(texts) if texts else (excerpt(raw) if body is None else "") or "no message"
    common: dict[str, Any] = {
        "status": status,
        "organization_id": organization_id,
        "texts": texts,
        "parameter": next((p for p, _ in messages if p), None),
    }
    retry_after = parse_retry_after(lower.get("retry-after"), now=now)
    if status == 429:
        return Throttled(f"bookingtime is throttling: {shown}", retry_after=retry_after, **common)
    if status < 400:
        # As bookingtime's SDK, no redirect is followed: it could carry the token elsewhere.
        location = lower.get("location", "?")
        return UnexpectedResponse(
            f"bookingtime answered {status}, a redirect to {location}, which is not followed",
            permanent=True,
            **common,
        )
    if status >= 500 or (body is None and status not in (401, 403, 404)):
        what = "an answer that is not JSON" if body is None else "a server error"
        return Transient(
            f"bookingtime sent {what}: {shown}",
            retry_after=retry_after,
            code="not_json" if body is None else None,
            **common,
        )
    if status == 401:
        return CredentialsRefused(f"bookingtime refused a fresh access token: {shown}", **common)
    if status == 403:
        return OrganizationNotPermitted(
            f"the app is not permitted for organisation {organization_id}: {shown}", **common
        )
    if status == 404:
        return NotFound(f"not found: {shown}", **common)
    if status == 400 and messages:
        return ValidationFailed(f"bookingtime refused the request: {shown}", **common)
    return UnexpectedResponse(f"bookingtime answered {status}: {shown}", **common)


def error_from_token_endpoint(
    status: int,
    headers: Mapping[str, str],
    body: Any,
    *,
    grant_type: str,
    organization_id: str | None,
    raw: bytes = b"",
    now: datetime | None = None,
) -> BookingtimeError:
    """Classify a non-200 answer of the token endpoint (Auth0-style `error` bodies, INFERRED)."""
    lower = {key.lower(): value for key, value in headers.items()}
    error = body.get("error") if isinstance(body, Mapping) else None
    description = body.get("error_description") if isinstance(body, Mapping) else None
    code = error if isinstance(error, str) else None
    shown = " ".join(
        part for part in (code, description if isinstance(description, str) else None) if part
    ) or (excerpt(raw) if raw else "no message")
    common: dict[str, Any] = {"status": status, "code": code, "organization_id": organization_id}
    retry_after = parse_retry_after(lower.get("retry-after"), now=now)
    if status == 429:
        return Throttled(
            f"the token endpoint is throttling: {shown}", retry_after=retry_after, **common
        )
    if status < 400:
        return UnexpectedResponse(
            f"the token endpoint answered {status}; redirects are not followed",
            permanent=True,
            **common,
        )
    if status >= 500:
        return Transient(
            f"the token endpoint failed ({grant_type}): {shown}", retry_after=retry_after, **common
        )
    if status == 403 or code == "access_denied":
        return OrganizationNotPermitted(
            f"the app is not permitted for organisation {organization_id}: {shown}", **common
        )
    if status == 401 or code in ("invalid_client", "invalid_grant", "unauthorized_client"):
        return CredentialsRefused(
            f"the token endpoint refused the {grant_type} grant: {shown}", **common
        )
    if body is None or code in ("server_error", "temporarily_unavailable"):
        return Transient(
            f"the token endpoint failed ({grant_type}): {shown}", retry_after=retry_after, **common
        )
    return UnexpectedResponse(f"the token endpoint answered {status}: {shown}", **common)
