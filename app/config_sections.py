"""The nested sections of calbridge's settings (`CALBRIDGE_WORKER__…`, `CALBRIDGE_RETENTION__…`,
`CALBRIDGE_OUTLOOK__…`, `CALBRIDGE_BOOKINGTIME__…`) and the URL checks they share with
`app.config`, which reads them all into one `Settings`."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, ValidationInfo, field_validator

# Graph only calls https endpoints; plain http is allowed where only the sandbox can call.
LOOPBACK_HOSTS = frozenset({"127.0.0.1", "::1", "localhost"})


def url_problem(value: str) -> str | None:
    """Why `value` is not an absolute http(s) URL, or None."""
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 (raises ValueError on a bad port)
    except ValueError as exc:
        return f"{value!r} is not a URL ({exc})"
    if parts.scheme not in ("https", "http") or not parts.hostname:
        return f"{value!r} is not an absolute http(s) URL"
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
    problem = url_problem(value)
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
