"""What the Graph client sends (TypedDicts in Graph's camelCase) and reads (pydantic models that
keep unknown fields), plus the result wrappers that carry Graph's request ids to the sync history.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypedDict, TypeVar

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from app.graph.errors import GraphError

T = TypeVar("T")


# --- sent ------------------------------------------------------------------------------------


class DateTimeTimeZone(TypedDict):
    dateTime: str  # "2017-04-15T12:00:00", local to timeZone
    timeZone: str  # a Windows name, or one of Graph's listed IANA names


class ItemBody(TypedDict):
    contentType: Literal["text", "html"]
    content: str


class Location(TypedDict, total=False):
    displayName: str
    address: dict[str, str]


class EventWrite(TypedDict, total=False):
    """Fields calbridge writes on an event (create, or the changed subset on update)."""

    subject: str
    body: ItemBody
    start: DateTimeTimeZone
    end: DateTimeTimeZone
    location: Location
    showAs: Literal["free", "tentative", "busy", "oof", "workingElsewhere", "unknown"]
    categories: list[str]
    isAllDay: bool
    isReminderOn: bool
    reminderMinutesBeforeStart: int
    sensitivity: Literal["normal", "personal", "private", "confidential"]


# --- read ------------------------------------------------------------------------------------


class GraphModel(BaseModel):
    model_config = ConfigDict(extra="allow", populate_by_name=True, alias_generator=to_camel)


class EventTime(GraphModel):
    date_time: str
    time_zone: str


class Event(GraphModel):
    """An event as Graph returns it; fields calbridge does not name stay in `model_extra`."""

    id: str
    etag: str | None = Field(default=None, alias="@odata.etag")
    change_key: str | None = None
    ical_uid: str | None = Field(default=None, alias="iCalUId")
    transaction_id: str | None = None
    subject: str | None = None
    start: EventTime | None = None
    end: EventTime | None = None
    show_as: str | None = None
    is_cancelled: bool | None = None
    is_all_day: bool | None = None
    type: str | None = None
    series_master_id: str | None = None
    categories: list[str] = []
    single_value_extended_properties: list[dict[str, Any]] | None = None


class RemovedEvent(GraphModel):
    """A delta entry with `@removed`: deleted, or moved out of the window (`reason`)."""

    id: str
    reason: str = "deleted"


class User(GraphModel):
    id: str
    display_name: str | None = None
    mail: str | None = None
    user_principal_name: str | None = None


class Mailbox(GraphModel):
    """The mailbox's default calendar: readable with Calendars.Read* alone (no User.Read.All)."""

    id: str
    name: str | None = None
    owner: dict[str, Any] | None = None


class Subscription(GraphModel):
    id: str
    resource: str
    change_type: str
    notification_url: str | None = None
    lifecycle_notification_url: str | None = None
    client_state: str | None = None
    expiration_date_time: datetime
    application_id: str | None = None
    creator_id: str | None = None
    latest_supported_tls_version: str | None = None


# --- results ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class GraphResult(Generic[T]):
    """A successful call's value with the ids Graph and we gave it (for the sync history)."""

    value: T
    status: int
    request_id: str | None
    client_request_id: str


@dataclass
class DeltaPage:
    """One calendarView delta page: changed events and removals apart; exactly one link is set."""

    events: list[Event]
    removed: list[RemovedEvent]
    next_link: str | None
    delta_link: str | None
    request_id: str | None
    client_request_id: str


@dataclass
class DeltaResult:
    """A whole delta round: all pages followed up to the new deltaLink."""

    events: list[Event]
    removed: list[RemovedEvent]
    delta_link: str
    request_ids: list[str | None] = field(default_factory=list)


@dataclass(frozen=True)
class BatchRequest:
    """One `$batch` item; `url` is relative to the version root (`/users/{id}/events`)."""

    id: str
    method: Literal["GET", "POST", "PATCH", "DELETE"]
    url: str
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class BatchItemResult:
    """One item's own outcome; `error` is set (through the same error tree) when status ≥ 400."""

    id: str
    status: int
    headers: dict[str, str]
    body: Any
    error: GraphError | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
