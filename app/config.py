"""Settings: every `CALBRIDGE_*` environment variable (and `.env`), read once into one object."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy.engine import make_url

DEFAULT_DATABASE_URL = "sqlite:///./calbridge.db"
# Graph only calls https endpoints; plain http is allowed where only the sandbox can call.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


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
    subscription_minutes: int = Field(
        default=10_080,
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
            raise ValueError(f"CALBRIDGE_PUBLIC_URL: {problem}")
        return value.strip()

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


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read from the environment once."""
    return Settings()
