"""Settings: every `CALBRIDGE_*` environment variable (and `.env`), read once into one object."""

from __future__ import annotations

import ipaddress
import re
import ssl
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict, SettingsError
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

DEFAULT_DATABASE_URL = "sqlite:///./calbridge.db"
# Graph only calls https endpoints; plain http is allowed where only the sandbox can call.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})
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


def _url_problem(value: str) -> str | None:
    """Why `value` is not an absolute http(s) URL, or None."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        return f"{value!r} is not a URL ({exc})"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{value!r} is not an absolute http(s) URL"
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


class WorkerSettings(BaseModel):
    """Knobs of the job worker (`CALBRIDGE_WORKER__CONCURRENCY=8` and so on)."""

    # A job spends most of its time waiting for Graph, so one process keeps many in flight:
    # enough that one core, not the waiting, bounds a worker (docs/operations.md).
    concurrency: int = Field(default=128, ge=1, le=256, description="jobs run at once per process")
    lease_seconds: float = Field(
        default=60.0, gt=0, description="a claimed job whose lease lapses is claimed again"
    )
    heartbeat_seconds: float | None = Field(
        default=None, gt=0, description="lease renewal interval; default a third of the lease"
    )
    poll_seconds: float = Field(default=0.5, gt=0, description="idle wait between claims")
    max_attempts: int = Field(default=8, ge=1, description="attempts before a job is dead")
    mailbox_concurrency: int = Field(
        default=4, ge=1, description="running jobs per mailbox across all workers"
    )
    backoff_base_seconds: float = Field(default=2.0, gt=0)
    backoff_max_seconds: float = Field(default=3600.0, gt=0)
    shutdown_grace_seconds: float = Field(
        default=20.0, ge=0, description="time in-flight jobs get to finish on SIGTERM"
    )

    @property
    def heartbeat_interval(self) -> float:
        return self.heartbeat_seconds or self.lease_seconds / 3


class RetentionSettings(BaseModel):
    """How long finished work is kept before the prune job removes it."""

    done_jobs_days: float = Field(default=7.0, gt=0)
    inbox_days: float = Field(default=30.0, gt=0)
    history_days: float = Field(
        default=180.0, gt=0, description="sync history records older than this are removed"
    )
    prune_interval_seconds: float = Field(default=3600.0, gt=0)


class OutlookSettings(BaseModel):
    """Outlook → calbridge: subscriptions, delta sync and busy blocks
    (`CALBRIDGE_OUTLOOK__HORIZON_DAYS=180` and so on)."""

    horizon_days: int = Field(
        default=180, ge=1, le=1825, description="how far ahead the calendarView delta looks"
    )
    safety_delta_seconds: float = Field(
        default=900.0,
        ge=60,
        description="a delta runs per mailbox this often even without notifications",
    )
    # Graph refuses (400) an expiry more than 10,080 minutes ahead of its own clock: asking for
    # a little less leaves room for this host's clock to run ahead of Microsoft's.
    subscription_minutes: int = Field(
        default=10_070,
        ge=45,
        le=10_080,
        description="lifetime asked for each subscription (Graph's maximum for events: 10,080)",
    )
    renew_before_minutes: int = Field(
        default=4_320, ge=30, description="renew a subscription when less than this is left"
    )
    upkeep_interval_seconds: float = Field(
        default=3600.0, ge=60, description="how often subscriptions are checked and renewed"
    )


BOOKINGTIME_LOCALE = re.compile(r"[a-z]{2}(?:_[A-Z]{2})?")


def bookingtime_url_problem(value: str) -> str | None:
    """Why `value` cannot be a bookingtime endpoint (it carries the app's secret and tokens)."""
    problem = _url_problem(value)
    if problem is not None:
        return problem
    parts = urlsplit(value)
    if parts.scheme == "http" and (parts.hostname or "").lower() not in LOOPBACK_HOSTS:
        return f"{value!r} must use https (it carries the app's secret and tokens)"
    if parts.query or parts.fragment or parts.username or parts.password:
        return f"{value!r} must not carry a query, fragment or credentials"
    return None


class BookingtimeSettings(BaseModel):
    """bookingtime's App API and auth server, and how often calbridge polls it
    (`CALBRIDGE_BOOKINGTIME__API_URL=...` and so on)."""

    api_url: str = Field(
        default="https://api.bookingtime.com/app/v3/",
        description="App API base; requests go to {api_url}{locale}/organization/...",
    )
    auth_url: str = Field(
        default="https://auth.bookingtime.com/oauth/token", description="OAuth token endpoint"
    )
    locale: str = Field(
        default="de", description="language of bookingtime's messages, in the URL (de, en, de_DE)"
    )
    poll_seconds: float = Field(
        default=60.0, ge=5, le=3600, description="cadence of the hot tier (this week and next)"
    )
    # bookingtime's own plugins and SDK readme use 15 s (its SDK's default is 30 s).
    timeout_seconds: float = Field(
        default=15.0, gt=0, le=300, description="longest wait for one bookingtime request"
    )

    @field_validator("api_url", "auth_url")
    @classmethod
    def _endpoint(cls, value: str, info: ValidationInfo) -> str:
        value = value.strip()
        problem = bookingtime_url_problem(value)
        if problem is not None:
            raise ValueError(problem)
        # The locale is appended to the API base as a path segment.
        return value if info.field_name != "api_url" or value.endswith("/") else f"{value}/"

    @field_validator("locale")
    @classmethod
    def _locale(cls, value: str) -> str:
        value = value.strip()
        if not BOOKINGTIME_LOCALE.fullmatch(value):
            raise ValueError(f"{value!r} is not a locale like de, en or de_DE")
        return value


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
        problem = _url_problem(value)
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
