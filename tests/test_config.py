"""Settings come from the fixed CALBRIDGE_* names (DESIGN.md), nested worker knobs included."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import DEFAULT_DATABASE_URL, Settings


def test_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ["DATABASE_URL", "PUBLIC_URL", "SECRET_KEY", "ADMIN_TOKEN", "GRAPH_URL"]:
        monkeypatch.delenv(f"CALBRIDGE_{name}", raising=False)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == DEFAULT_DATABASE_URL == "sqlite:///./calbridge.db"
    assert settings.public_url is None
    assert settings.graph_url == "https://graph.microsoft.com/v1.0"
    assert settings.authority_host == "https://login.microsoftonline.com"
    assert settings.worker.mailbox_concurrency == 4


def test_environment_names(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bundle = tmp_path / "ca.pem"
    env = {
        "CALBRIDGE_DATABASE_URL": "postgresql://u@db/calbridge",
        "CALBRIDGE_PUBLIC_URL": "https://calbridge.example.com/",
        "CALBRIDGE_SECRET_KEY": "k1,k2",
        "CALBRIDGE_ADMIN_TOKEN": "bootstrap",
        "CALBRIDGE_GRAPH_URL": "https://127.0.0.1:8443/v1.0",
        "CALBRIDGE_AUTHORITY_HOST": "https://127.0.0.1:8443",
        "CALBRIDGE_CA_BUNDLE": str(bundle),
        "CALBRIDGE_WORKER__CONCURRENCY": "3",
        "CALBRIDGE_WORKER__MAILBOX_CONCURRENCY": "2",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = Settings(_env_file=None)  # type: ignore[call-arg]
    assert settings.database_url == "postgresql://u@db/calbridge"
    assert settings.public_url == "https://calbridge.example.com"
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == "k1,k2"
    assert "k1" not in repr(settings)  # secrets never show in reprs or logs
    assert settings.admin_token is not None
    assert settings.graph_url == "https://127.0.0.1:8443/v1.0"
    assert settings.ca_bundle == bundle
    assert settings.worker.concurrency == 3
    assert settings.worker.mailbox_concurrency == 2
    assert not settings.is_sqlite


def test_dotenv_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CALBRIDGE_PUBLIC_URL", raising=False)
    env_file = tmp_path / ".env"
    env_file.write_text("CALBRIDGE_PUBLIC_URL=https://from-dotenv.example.com\n")
    settings = Settings(_env_file=env_file)  # type: ignore[call-arg]
    assert settings.public_url == "https://from-dotenv.example.com"


def test_sqlite_file_only_for_a_sqlite_file(tmp_path: Path) -> None:
    def file_of(url: str) -> Path | None:
        return Settings(_env_file=None, database_url=url).sqlite_file  # type: ignore[call-arg]

    assert file_of(f"sqlite:///{tmp_path}/calbridge.db") == tmp_path / "calbridge.db"
    assert file_of("sqlite://") is None
    assert file_of("sqlite:///:memory:") is None
    assert file_of("postgresql://u@db/calbridge") is None
