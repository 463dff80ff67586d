"""Secrets at rest: Fernet with rotation, the development key file, and the PostgreSQL rule."""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from app.config import Settings
from app.crypto import (
    SecretBox,
    SecretKeyError,
    check_secret_key,
    key_file_for,
    load_secret_box,
)


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg, arg-type]


def test_round_trip_and_ciphertext_hides_the_secret() -> None:
    box = SecretBox([Fernet.generate_key()])
    token = box.encrypt("s3cr3t-value")
    assert "s3cr3t-value" not in token
    assert box.decrypt(token) == "s3cr3t-value"


def test_rotation_new_key_first_old_keys_still_decrypt() -> None:
    old, new = Fernet.generate_key(), Fernet.generate_key()
    stored = SecretBox([old]).encrypt("client-secret")
    rotated_box = load_secret_box(
        _settings(secret_key=f"{new.decode()}, {old.decode()}", database_url="sqlite://")
    )
    assert rotated_box.decrypt(stored) == "client-secret"
    re_encrypted = rotated_box.rotate(stored)
    assert SecretBox([new]).decrypt(re_encrypted) == "client-secret"
    with pytest.raises(SecretKeyError, match="cannot be decrypted"):
        SecretBox([old]).decrypt(re_encrypted)


def test_invalid_key_is_a_readable_error() -> None:
    with pytest.raises(SecretKeyError, match="Fernet keys"):
        load_secret_box(_settings(secret_key="not-a-key"))


def test_sqlite_without_key_generates_a_0600_key_file_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(database_url=f"sqlite:///{tmp_path}/data/calbridge.db")
    assert settings.sqlite_file is not None
    key_file = key_file_for(settings.sqlite_file)
    assert key_file == tmp_path / "data" / "calbridge.db.key"

    with caplog.at_level(logging.WARNING, logger="app.crypto"):
        first = load_secret_box(settings)
    assert key_file.exists()
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert "CALBRIDGE_SECRET_KEY is not set" in caplog.text

    token = first.encrypt("webhook-secret")
    caplog.clear()
    second = load_secret_box(settings)  # same file, same key, no new warning
    assert second.decrypt(token) == "webhook-secret"
    assert "generated" not in caplog.text


def test_postgres_without_key_is_a_clear_startup_error() -> None:
    settings = _settings(database_url="postgresql://postgres@127.0.0.1:5432/test")
    with pytest.raises(SecretKeyError, match="CALBRIDGE_SECRET_KEY is required with PostgreSQL"):
        load_secret_box(settings)


def test_check_secret_key_touches_nothing(tmp_path: Path) -> None:
    def settings(url: str, key: str | None = None) -> Settings:
        return _settings(database_url=url, secret_key=key)

    sqlite = f"sqlite:///{tmp_path / 'c.db'}"
    check_secret_key(settings(sqlite), required=True)  # a key file would come later, not here
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(SecretKeyError, match="Fernet keys"):
        check_secret_key(settings(sqlite, "not-a-key"), required=False)
    postgres = "postgresql://u@db/calbridge"
    check_secret_key(settings(postgres), required=False)  # `calbridge migrate` needs none
    with pytest.raises(SecretKeyError, match="required with PostgreSQL"):
        check_secret_key(settings(postgres), required=True)
