"""Standard Webhooks verification of a bookingtime delivery, on the raw body, before any parsing.

A delivery verifies with the connection's current secret or, during the grace period after a
rotation, with the secret the rotation replaced; any one matching `v1` signature is enough.

SignatureError                 401, nothing is stored
├── MissingSignature           `missing_signature`: a `webhook-*` header is absent or empty
├── InvalidSignature           `invalid_signature`: malformed headers, no matching `v1` signature
└── StaleTimestamp             `stale_timestamp`: `webhook-timestamp` outside ±tolerance
UndecodableBody                the body is not UTF-8 (the router answers 400 `invalid_json`)
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

from standardwebhooks.webhooks import (
    EmptyWebhookSecretError,
    Webhook,
    WebhookVerificationError,
)

# external_id is a VARCHAR(255); a longer id would fail in the database instead of here.
MAX_WEBHOOK_ID_LENGTH = 255
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_UNIX_SECONDS = re.compile(r"[0-9]{1,15}")


class SignatureError(Exception):
    """The delivery is not authentic; `code` is the problem code, the message says why."""

    code = "invalid_signature"


class MissingSignature(SignatureError):
    code = "missing_signature"


class InvalidSignature(SignatureError):
    code = "invalid_signature"


class StaleTimestamp(SignatureError):
    code = "stale_timestamp"


class UndecodableBody(ValueError):
    """The body is not UTF-8, so it is neither verifiable by the library nor JSON."""


@dataclass(frozen=True, slots=True)
class VerifiedDelivery:
    webhook_id: str
    text: str  # the raw body, decoded (lossless: the signature covered these exact bytes)


def _parsed(secret: str) -> tuple[Webhook, bytes] | None:
    """The library's verifier and the raw HMAC key (for bodies the library cannot take, not
    UTF-8) of a secret; None for an empty or unusable one."""
    try:
        return Webhook(secret), base64.b64decode(secret.removeprefix("whsec_") + "==")
    except (EmptyWebhookSecretError, ValueError):
        return None


class WebhookVerifier:
    """One connection's webhook secrets, ready to verify deliveries (build once, reuse).

    `previous_secret` is the secret a rotation replaced: it is accepted while the delivery's
    `now` is before `previous_expires_at`, and never without a working current secret.
    """

    def __init__(
        self,
        secret: str,
        *,
        previous_secret: str | None = None,
        previous_expires_at: datetime | None = None,
    ) -> None:
        # An empty or unusable secret disables the endpoint; it never means "accept all".
        self._current = _parsed(secret)
        self._previous = None
        self._previous_until = 0.0
        if previous_secret and previous_expires_at is not None:
            self._previous = _parsed(previous_secret)
            self._previous_until = previous_expires_at.timestamp()

    def verify(
        self,
        body: bytes,
        headers: Mapping[str, str],
        *,
        tolerance_seconds: int,
        now: float | None = None,
    ) -> VerifiedDelivery:
        """The delivery's id and text once headers, timestamp and signature all check out.

        `standardwebhooks.Webhook.verify` is the final check. It is guarded because it decodes
        the body as UTF-8 itself, raises ValueError on a malformed signature list, and has a
        fixed ±5 min window; the window configured here is applied first.
        """
        webhook_id = headers.get("webhook-id", "")
        timestamp = headers.get("webhook-timestamp", "")
        signature = headers.get("webhook-signature", "")
        if not (webhook_id and timestamp and signature):
            raise MissingSignature(
                "webhook-id, webhook-timestamp and webhook-signature headers are required"
            )
        if len(webhook_id) > MAX_WEBHOOK_ID_LENGTH or _CONTROL.search(webhook_id):
            raise InvalidSignature(
                f"webhook-id must be at most {MAX_WEBHOOK_ID_LENGTH} printable characters"
            )
        if not _UNIX_SECONDS.fullmatch(timestamp):
            raise InvalidSignature("webhook-timestamp must be integer Unix seconds")
        now = time.time() if now is None else now
        if abs(now - int(timestamp)) > tolerance_seconds:
            raise StaleTimestamp(
                f"webhook-timestamp is more than {tolerance_seconds} s away from the server time"
            )
        # Entries are `<version>,<base64>`; drop malformed ones (the library would raise).
        entries = [entry for entry in signature.split() if entry.count(",") == 1]
        if not entries:
            raise InvalidSignature("webhook-signature has no `v1,<base64>` entry")
        if self._current is None:
            raise InvalidSignature("webhook deliveries are disabled for this organisation")
        secrets = [self._current]
        if self._previous is not None and now < self._previous_until:
            secrets.append(self._previous)
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            # The library verifies text only; check these bytes ourselves so that an unsigned
            # body is a 401 like any other, and only an authentic one is "not JSON" (400).
            if not any(_signed(key, webhook_id, timestamp, body, entries) for _, key in secrets):
                raise InvalidSignature("no webhook-signature matches the body") from exc
            raise UndecodableBody("the body is not valid UTF-8") from exc
        checked = {
            "webhook-id": webhook_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": " ".join(entries),
        }
        mismatch: WebhookVerificationError | None = None
        for webhook, _ in secrets:
            try:
                webhook.verify(text, checked, json_parse=False)
            except WebhookVerificationError as exc:
                if "timestamp" in str(exc):  # the library's own fixed window
                    raise StaleTimestamp(
                        "webhook-timestamp is too far from the server time"
                    ) from exc
                mismatch = exc
                continue
            except ValueError as exc:  # base64 padding errors in a signature entry
                raise InvalidSignature("webhook-signature is malformed") from exc
            return VerifiedDelivery(webhook_id=webhook_id, text=text)
        raise InvalidSignature("no webhook-signature matches the body") from mismatch


def _signed(key: bytes, webhook_id: str, timestamp: str, body: bytes, entries: list[str]) -> bool:
    """Whether a `v1` entry is the HMAC-SHA256 of `id.timestamp.body` (raw bytes) under `key`."""
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    expected = hmac.new(key, signed, hashlib.sha256).digest()
    for entry in entries:
        version, _, value = entry.partition(",")
        try:
            candidate = base64.b64decode(value, validate=True)
        except ValueError:
            continue
        if version == "v1" and hmac.compare_digest(expected, candidate):
            return True
    return False
