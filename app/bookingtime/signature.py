"""Standard Webhooks verification of a bookingtime delivery, on the raw body, before any parsing.

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


class WebhookVerifier:
    """One connection's webhook secret, ready to verify deliveries (build once, reuse)."""

    def __init__(self, secret: str) -> None:
        try:
            self._webhook: Webhook | None = Webhook(secret)
            # The HMAC key as the library derives it, for bodies it cannot take (not UTF-8).
            self._key = base64.b64decode(secret.removeprefix("whsec_") + "==")
        except (EmptyWebhookSecretError, ValueError):
            # An empty or unusable secret disables the endpoint; it never means "accept all".
            self._webhook = None
            self._key = b""

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
        if self._webhook is None:
            raise InvalidSignature("webhook deliveries are disabled for this organisation")
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            # The library verifies text only; check these bytes ourselves so that an unsigned
            # body is a 401 like any other, and only an authentic one is "not JSON" (400).
            if not self._signed(webhook_id, timestamp, body, entries):
                raise InvalidSignature("no webhook-signature matches the body") from exc
            raise UndecodableBody("the body is not valid UTF-8") from exc
        checked = {
            "webhook-id": webhook_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": " ".join(entries),
        }
        try:
            self._webhook.verify(text, checked, json_parse=False)
        except WebhookVerificationError as exc:
            if "timestamp" in str(exc):  # the library's own fixed window
                raise StaleTimestamp("webhook-timestamp is too far from the server time") from exc
            raise InvalidSignature("no webhook-signature matches the body") from exc
        except ValueError as exc:  # base64 padding errors in a signature entry
            raise InvalidSignature("webhook-signature is malformed") from exc
        return VerifiedDelivery(webhook_id=webhook_id, text=text)

    def _signed(self, webhook_id: str, timestamp: str, body: bytes, entries: list[str]) -> bool:
        """Whether a `v1` entry is the HMAC-SHA256 of `id.timestamp.body` (raw bytes)."""
        signed = f"{webhook_id}.{timestamp}.".encode() + body
        expected = hmac.new(self._key, signed, hashlib.sha256).digest()
        for entry in entries:
            version, _, value = entry.partition(",")
            try:
                candidate = base64.b64decode(value, validate=True)
            except ValueError:
                continue
            if version == "v1" and hmac.compare_digest(expected, candidate):
                return True
        return False
