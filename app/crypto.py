"""Secrets at rest: Fernet encryption with key rotation (`MultiFernet`).

`CALBRIDGE_SECRET_KEY` lists one or more Fernet keys, comma-separated: the first encrypts, all
decrypt. Without it, an embedded SQLite install gets a key generated once into a 0600 file beside
the database; PostgreSQL refuses to start without an explicit key.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet

from app.config import Settings

log = logging.getLogger(__name__)


class SecretKeyError(RuntimeError):
    """The configured secret key is missing or unusable; the message says how to fix it."""


class SecretBox:
    """Encrypts and decrypts short secrets (client secrets, webhook secrets)."""

    def __init__(self, keys: list[bytes]) -> None:
        if not keys:
            raise SecretKeyError("no secret key given")
        try:
            self._fernet = MultiFernet([Fernet(key) for key in keys])
        except ValueError as exc:
            raise SecretKeyError(
                "CALBRIDGE_SECRET_KEY must be Fernet keys (32 url-safe base64-encoded bytes), "
                "comma-separated; make one with: python -c "
                '"from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"'
            ) from exc

    def encrypt(self, plaintext: str) -> str:
        return self._fernet.encrypt(plaintext.encode()).decode("ascii")

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode("ascii")).decode()
        except InvalidToken as exc:
            raise SecretKeyError(
                "a stored secret cannot be decrypted with CALBRIDGE_SECRET_KEY: "
                "was the key changed without keeping the old one after the new?"
            ) from exc

    def decrypt_or_none(self, token: str | None) -> str | None:
        """The plaintext, or None for no token or one no current key can read."""
        if token is None:
            return None
        try:
            return self.decrypt(token)
        except SecretKeyError:
            return None

    def rotate(self, token: str) -> str:
        """Re-encrypt a stored token with the first (newest) key."""
        return self._fernet.rotate(token.encode("ascii")).decode("ascii")


def key_file_for(database_file: Path) -> Path:
    """Where the generated development key of a SQLite database lives: beside its file."""
    return database_file.with_name(database_file.name + ".key")


def _read_or_create_key_file(path: Path) -> bytes:
    if path.exists():
        return path.read_bytes().strip()
    key = Fernet.generate_key()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
    log.warning(
        "CALBRIDGE_SECRET_KEY is not set: generated a development key into %s (mode 0600). "
        "Back it up with the database, or set CALBRIDGE_SECRET_KEY in production.",
        path,
    )
    return key


def check_secret_key(settings: Settings, *, required: bool) -> None:
    """Raise `SecretKeyError` for a malformed CALBRIDGE_SECRET_KEY (or a missing one where it is
    `required` with PostgreSQL), touching nothing: the CLI checks this before any work."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value().strip():
        raw = settings.secret_key.get_secret_value()
        SecretBox([part.strip().encode() for part in raw.split(",") if part.strip()])
    elif required and not settings.is_sqlite:
        load_secret_box(settings)


def load_secret_box(settings: Settings) -> SecretBox:
    """The process's SecretBox, from CALBRIDGE_SECRET_KEY or the SQLite key file."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value().strip():
        raw = settings.secret_key.get_secret_value()
        keys = [part.strip().encode() for part in raw.split(",") if part.strip()]
        return SecretBox(keys)
    if not settings.is_sqlite:
        raise SecretKeyError(
            "CALBRIDGE_SECRET_KEY is required with PostgreSQL: set it to a Fernet key "
            '(python -c "from cryptography.fernet import Fernet; '
            'print(Fernet.generate_key().decode())") and give every process the same value'
        )
    database_file = settings.sqlite_file
    if database_file is None:
        log.warning(
            "CALBRIDGE_SECRET_KEY is not set: using a throwaway key for an in-memory database"
        )
        return SecretBox([Fernet.generate_key()])
    return SecretBox([_read_or_create_key_file(key_file_for(database_file))])
