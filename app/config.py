"""Settings: every `CALBRIDGE_*` environment variable (and `.env`), read once into one object."""

from __future__ import annotations

import ipaddress
import ssl
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from app.config_sections import LOOPBACK_HOSTS as LOOPBACK_HOSTS
from app.config_sections import BookingtimeSettings as BookingtimeSettings
from app.config_sections import OutlookSettings as OutlookSettings
from app.config_sections import RetentionSettings as RetentionSettings
from app.config_sections import WorkerSettings as WorkerSettings
from app.config_sections import url_problem

DEFAULT_DATABASE_URL = "sqlite:///./calbridge.db"
# A bootstrap admin token shorter than this is guessable enough to warn about at start.
MIN_ADMIN_TOKEN_LENGTH = 16
# Settings whose value must never be echoed back in an error message.
SECRET_SETTINGS = frozenset({"secret_key", "admin_token"})


def public_url_problem(value: str) -> str | None:
    """Why `value` cannot be calbridge's public base URL (Graph's callback), or None."""
    try:
        parts = urlsplit(value)
        host = (parts.hostname or "").lower()
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        return f"{value!r} is not a URL ({exc})"
    if parts.scheme not in ("https", "http") or not host:
        return f"{value!r} is not an absolute http(s) URL"
    if parts.scheme == "http" and host not in LOOPBACK_HOSTS:
        return f"{value!r} must use https (Microsoft Graph calls only https endpoints)"
    if parts.query or parts.fragment or parts.username or parts.password:
        return f"{value!r} must not carry a query, fragment or credentials"
    return None


def database_url_problem(value: str) -> str | None:
    """Why `value` cannot be calbridge's database URL (only SQLite and PostgreSQL), or None."""
    try:
        url = make_url(value)
    except (ArgumentError, ValueError):
        return f"{value!r} is not a database URL"
    if url.get_backend_name() not in ("sqlite", "postgresql"):
        return f"{url.get_backend_name()!r} is not supported"
    return None


def parse_trusted_proxies(value: str) -> list[str]:
    """The addresses and networks of `CALBRIDGE_TRUSTED_PROXIES` (comma-separated)."""
    proxies = []
    for part in (item.strip() for item in value.split(",")):
        if not part:
            continue
        try:
            proxies.append(str(ipaddress.ip_network(part, strict=False)))
        except ValueError:
            raise ValueError(f"{part!r} is not an IP address or CIDR network") from None
    return proxies


class Settings(BaseSettings):
    """All configuration of calbridge. Names are fixed: see DESIGN.md."""

    model_config = SettingsConfigDict(
        env_prefix="CALBRIDGE_",
        env_file=".env",
        env_file_encoding="utf-8",
        env_nested_delimiter="__",
        extra="ignore",
    )

    database_url: str = DEFAULT_DATABASE_URL
    public_url: str | None = None
    secret_key: SecretStr | None = None
    admin_token: SecretStr | None = None
    graph_url: str = "https://graph.microsoft.com/v1.0"
    authority_host: str = "https://login.microsoftonline.com"
    ca_bundle: Path | None = None
    trusted_proxies: str = Field(
        default="",
        description=(
            "comma-separated addresses or CIDR networks of reverse proxies whose X-Forwarded-For "
            "and X-Forwarded-Proto are believed; default none (the peer address counts)"
        ),
    )

    webhook_tolerance_seconds: int = Field(default=300, ge=1)
    max_webhook_bytes: int = Field(default=1024 * 1024, ge=1024)
    metrics_public: bool = Field(
        default=False,
        description=(
            "serve GET /metrics without an admin token (for a scraper on a trusted network); "
            "otherwise it needs one, of either role"
        ),
    )

    log_format: Literal["auto", "json", "text"] = Field(
        default="auto",
        description="json: one object per line; text: readable; auto: text on a terminal",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO",
        description="DEBUG also lets msal, httpx, httpcore and urllib3 below WARNING",
    )
    webhook_secret_grace_seconds: int = Field(
        default=86_400,
        ge=0,
        description=(
            "after a connection's webhook secret is replaced, deliveries signed with the previous "
            "one are still accepted this long (0: the old secret stops working at once)"
        ),
    )

    opentelemetry: bool = Field(
        default=False,
        description="FastAPI's built-in OpenTelemetry spans, metrics and logs per request "
        "(configured with the OTEL_* environment variables); off, it costs nothing",
    )

    worker: WorkerSettings = WorkerSettings()
    retention: RetentionSettings = RetentionSettings()
    outlook: OutlookSettings = OutlookSettings()
    bookingtime: BookingtimeSettings = BookingtimeSettings()

    @field_validator("public_url", "graph_url", "authority_host")
    @classmethod
    def _strip_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @field_validator("log_format", "log_level", mode="before")
    @classmethod
    def _case_insensitive(cls, value: object, info: ValidationInfo) -> object:
        if not isinstance(value, str):
            return value
        value = value.strip()
        return value.upper() if info.field_name == "log_level" else value.lower()

    @field_validator("public_url")
    @classmethod
    def _public_https(cls, value: str | None) -> str | None:
        # An empty variable means "not set": subscriptions are then off with a status saying so.
        if not value or not value.strip():
            return None
        problem = public_url_problem(value.strip())
        if problem is not None:
            raise ValueError(problem)
        return value.strip()

    @field_validator("database_url")
    @classmethod
    def _database_url(cls, value: str) -> str:
        problem = database_url_problem(value.strip())
        if problem is not None:
            raise ValueError(problem)
        return value.strip()

    @field_validator("graph_url", "authority_host")
    @classmethod
    def _absolute_url(cls, value: str) -> str:
        problem = url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _trusted_proxies(cls, value: str) -> str:
        return ",".join(parse_trusted_proxies(value))

    @property
    def trusted_proxy_list(self) -> list[str]:
        return [part for part in self.trusted_proxies.split(",") if part]

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @property
    def sqlite_file(self) -> Path | None:
        """The SQLite database file, or None for PostgreSQL and in-memory databases."""
        url = make_url(self.database_url)
        if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
            return None
        return Path(url.database)


FIXES = {
    "database_url": "use sqlite:///path/to/calbridge.db or postgresql://user@host/database",
    "public_url": "use the https URL Microsoft Graph reaches calbridge at, or leave it unset",
    "graph_url": "use an absolute https URL, or unset it for Microsoft Graph",
    "authority_host": "use an absolute https URL, or unset it for Microsoft Entra",
    "log_level": "use DEBUG, INFO, WARNING or ERROR",
    "log_format": "use auto, json or text",
    "trusted_proxies": "list the proxies' addresses or CIDR networks, comma-separated",
}


NESTED_GROUPS = frozenset({"worker", "retention", "outlook", "bookingtime"})


class ConfigError(ValueError):
    """A setting is unusable; the message is one line naming the variable and the fix."""


def _variable(location: tuple[int | str, ...]) -> str:
    return "CALBRIDGE_" + "__".join(str(part) for part in location).upper()


def describe_validation_error(error: ValidationError) -> str:
    """One line for every problem pydantic found: the variable, its value, what is wrong."""
    problems = []
    for item in error.errors():
        location = tuple(item["loc"])
        message = str(item["msg"]).removeprefix("Value error, ")
        field = str(location[0]) if location else ""
        problem = f"{_variable(location)}: {message}"
        value = item.get("input")
        if field not in SECRET_SETTINGS and isinstance(value, str | int | float):
            problem = f"{_variable(location)}={str(value)[:80]!r}: {message}"
        if len(location) == 1 and field in NESTED_GROUPS:
            fix = f"set its knobs one by one: {_variable((field, 'knob'))}=value"
        else:
            fix = FIXES.get(field, "correct it, or unset it for the default")
        problems.append(f"{problem} ({fix})")
    return "; ".join(problems).replace("\n", " ")


def ca_bundle_problem(path: Path) -> str | None:
    """Why `path` cannot be CALBRIDGE_CA_BUNDLE (missing, a directory, not PEM), or None."""
    if not path.exists():
        return f"{path} does not exist"
    if path.is_dir():
        return f"{path} is a directory, not a PEM file"
    try:
        ssl.create_default_context().load_verify_locations(cafile=str(path))
    except (ssl.SSLError, OSError, ValueError) as exc:
        return f"{path} is not a readable PEM certificate file ({exc.__class__.__name__})"
    return None


def load_settings() -> Settings:
    """The process-wide settings, every one checked, before anything else is touched: a
    `ConfigError` with one line naming the variable and its fix instead of a traceback."""
    try:
        settings = get_settings()
    except ValidationError as exc:
        raise ConfigError(describe_validation_error(exc)) from None
    except SettingsError as exc:
        # A nested group given as one variable that is not JSON (CALBRIDGE_WORKER=8, say).
        field = str(exc).split('"')[1] if str(exc).count('"') >= 2 else "?"
        raise ConfigError(
            f"{_variable((field,))}: not valid JSON; set its knobs one by one "
            f"({_variable((field, 'name'))}=value)"
        ) from None
    if settings.ca_bundle is not None:
        problem = ca_bundle_problem(settings.ca_bundle)
        if problem is not None:
            raise ConfigError(
                f"CALBRIDGE_CA_BUNDLE: {problem} "
                "(point it at the PEM file of the CA that signs Graph's certificate, or unset it)"
            )
    return settings


def settings_warnings(settings: Settings) -> list[str]:
    """What is usable but unwise, logged at start."""
    warnings = []
    if settings.admin_token is not None:
        length = len(settings.admin_token.get_secret_value())
        if 0 < length < MIN_ADMIN_TOKEN_LENGTH:
            warnings.append(
                f"CALBRIDGE_ADMIN_TOKEN is only {length} characters long: anyone who can reach "
                f"the admin API can guess it; use at least {MIN_ADMIN_TOKEN_LENGTH} random "
                "characters (or `calbridge token create`)"
            )
    return warnings


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
