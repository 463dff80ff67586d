"""Settings come from the fixed CALBRIDGE_* names (DESIGN.md), nested worker knobs included."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from pydantic import ValidationError

from app.cli import uvicorn_proxy_options
from app.config import DEFAULT_DATABASE_URL, Settings, ca_bundle_problem, settings_warnings
from app.crypto import SecretBox
from app.main import create_app
from tests.conftest import SECRET_KEY


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


def _settings(**values: object) -> Settings:
    return Settings(_env_file=None, **values)  # type: ignore[call-arg]


def test_trusted_proxies_default_to_none_and_parse_addresses_and_networks() -> None:
    assert _settings().trusted_proxy_list == []
    settings = _settings(trusted_proxies=" 10.0.0.0/8, 192.0.2.7 ,2001:db8::/32,")
    assert settings.trusted_proxy_list == ["10.0.0.0/8", "192.0.2.7/32", "2001:db8::/32"]
    with pytest.raises(ValidationError, match="'proxy' is not an IP address or CIDR network"):
        _settings(trusted_proxies="10.0.0.0/8,proxy")


def test_trusted_proxies_is_read_from_its_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALBRIDGE_TRUSTED_PROXIES", "10.1.0.0/16")
    assert Settings(_env_file=None).trusted_proxy_list == ["10.1.0.0/16"]  # type: ignore[call-arg]


async def _client_seen(settings: Settings, peer: str) -> str:
    """The client address an app behind `calbridge serve`'s uvicorn configuration sees for a
    request from `peer` that carries `X-Forwarded-For: 203.0.113.9`."""
    seen: list[str] = []

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        seen.append(scope["client"][0])

    config = uvicorn.Config(app, log_config=None, **uvicorn_proxy_options(settings))
    config.load()
    scope = {
        "type": "http",
        "scheme": "http",
        "client": (peer, 50000),
        "headers": [(b"x-forwarded-for", b"203.0.113.9")],
    }
    await config.loaded_app(scope, None, None)
    return seen[0]


async def test_x_forwarded_for_is_believed_only_from_trusted_proxies() -> None:
    untrusted = _settings()
    # Not even from loopback, uvicorn's own default, unless the operator says so.
    assert await _client_seen(untrusted, "127.0.0.1") == "127.0.0.1"
    assert await _client_seen(untrusted, "10.1.2.3") == "10.1.2.3"
    trusted = _settings(trusted_proxies="10.0.0.0/8")
    assert await _client_seen(trusted, "10.1.2.3") == "203.0.113.9"
    assert await _client_seen(trusted, "192.0.2.1") == "192.0.2.1"


def test_a_short_bootstrap_token_is_warned_about() -> None:
    assert settings_warnings(_settings(admin_token="x" * 16)) == []
    assert settings_warnings(_settings()) == []
    (warning,) = settings_warnings(_settings(admin_token="short-token"))
    assert "CALBRIDGE_ADMIN_TOKEN" in warning and "16" in warning
    assert "short-token" not in warning


async def test_the_warning_is_logged_when_the_app_starts(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _settings(
        database_url=f"sqlite:///{tmp_path / 'w.db'}", secret_key=SECRET_KEY, admin_token="abc"
    )
    app = create_app(settings, secret_box=SecretBox([SECRET_KEY.encode()]))
    with caplog.at_level(logging.WARNING):
        async with app.router.lifespan_context(app):
            pass
    assert any("CALBRIDGE_ADMIN_TOKEN is only 3 characters" in r.message for r in caplog.records)


def test_ca_bundle_problems_name_the_file(tmp_path: Path) -> None:
    assert "missing.pem does not exist" in str(ca_bundle_problem(tmp_path / "missing.pem"))
    assert "is a directory" in str(ca_bundle_problem(tmp_path))
    junk = tmp_path / "junk.pem"
    junk.write_text("junk")
    assert f"{junk} is not a readable PEM" in str(ca_bundle_problem(junk))
