"""Busy API for bookingtime: `/api/v1/connections/{organization_id}/employees/{employee_id}/busy`,
the time an employee's Outlook calendar is blocked by events calbridge did not write."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, Query
from pydantic import BaseModel, ConfigDict, Field, field_serializer

from app.admin.dependencies import DbSession, EmployeeId, OrganizationId
from app.busy import repository as repo
from app.connections import service
from app.connections.service import InvalidFieldError
from app.http.problems import problem_responses
from app.models import BusyBlock

router = APIRouter(prefix="/api/v1/connections/{organization_id}/employees", tags=["busy"])

#: The longest range one request may ask for (a leap year's worth).
MAX_RANGE = timedelta(days=366)


def _utc_text(value: datetime) -> str:
    """ISO 8601 in UTC with `Z`, seconds precision unless the time has a fraction."""
    text = value.astimezone(UTC).isoformat()
    return text.replace("+00:00", "Z")


class BusyInterval(BaseModel):
    """Time the employee is blocked; with `merge=false` one Outlook event (or occurrence)."""

    model_config = ConfigDict(
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "start": "2026-03-02T08:00:00Z",
                    "end": "2026-03-02T09:30:00Z",
                    "showAs": "busy",
                    "isAllDay": False,
                    "subject": "Team meeting",
                }
            ]
        },
    )

    start: datetime = Field(description="Start, UTC.")
    end: datetime = Field(description="End (exclusive), UTC.")
    show_as: str | None = Field(
        default=None,
        alias="showAs",
        description="Outlook's showAs (`busy`, `tentative`, `oof`, `workingElsewhere`); only "
        "with `merge=false`.",
    )
    is_all_day: bool | None = Field(
        default=None, alias="isAllDay", description="An all-day event; only with `merge=false`."
    )
    subject: str | None = Field(
        default=None,
        description="The event's subject; only with `merge=false` and when the connection "
        "stores subjects (event setting `busy_subjects`).",
    )

    @field_serializer("start", "end")
    def _utc(self, value: datetime) -> str:
        return _utc_text(value)


class BusyOut(BaseModel):
    """The busy time of one employee's mailbox in the asked range."""

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "organization_id": "f6Kq3ZbW8nTx2LmR5vYc9HdJ4pGs7aEu",
                    "employee_id": "brM4tQ8xZ1nV6kS3wL9pC2bH7fJ5dR0y",
                    "mailbox": "max@contoso.example",
                    "start": "2026-03-02T00:00:00Z",
                    "end": "2026-03-09T00:00:00Z",
                    "merged": True,
                    "synced_at": "2026-03-02T07:59:58Z",
                    "intervals": [
                        {"start": "2026-03-02T08:00:00Z", "end": "2026-03-02T09:30:00Z"},
                        {"start": "2026-03-03T00:00:00Z", "end": "2026-03-04T00:00:00Z"},
                    ],
                }
            ]
        }
    )

    organization_id: str
    employee_id: str
    mailbox: str
    start: datetime = Field(description="The range asked for, UTC.")
    end: datetime
    merged: bool = Field(description="Whether overlapping and adjacent intervals were merged.")
    synced_at: datetime | None = Field(
        default=None,
        description="When the mailbox's last delta sync completed; absent before the first.",
    )
    intervals: list[BusyInterval]

    @field_serializer("start", "end", "synced_at")
    def _utc(self, value: datetime | None) -> str | None:
        return None if value is None else _utc_text(value)


def merge_intervals(blocks: Sequence[BusyBlock]) -> list[tuple[datetime, datetime]]:
    """Overlapping and touching intervals as one, by start."""
    merged: list[tuple[datetime, datetime]] = []
    for block in sorted(blocks, key=lambda b: (b.start_at, b.end_at)):
        if merged and block.start_at <= merged[-1][1]:
            start, end = merged[-1]
            merged[-1] = (start, max(end, block.end_at))
        else:
            merged.append((block.start_at, block.end_at))
    return merged


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidFieldError(
            name, "needs a time zone: end it with `Z` or an offset such as `+01:00`"
        )
    return value.astimezone(UTC)


_TIME_EXAMPLES = ["2026-03-02T00:00:00Z", "2026-03-02T00:00:00+01:00"]


@router.get(
    "/{employee_id}/busy",
    summary="Busy time of an employee",
    description=(
        "The intervals in `[start, end)` during which the employee's Outlook calendar is blocked "
        "by events calbridge did not write (meetings, holidays, every occurrence of recurring "
        "series; `free` and cancelled events do not block). Merged by default: overlapping and "
        "touching intervals become one. With `merge=false` each Outlook event or occurrence comes "
        "alone with its `showAs`, `isAllDay` and, when the connection stores subjects, its "
        "`subject`. All times are UTC (`Z`). `start` and `end` need a time zone, `start` must "
        "be before `end`, and the range may span at most 366 days."
    ),
    response_model_exclude_none=True,
    responses=problem_responses(404, 422),
)
async def get_busy(
    organization_id: OrganizationId,
    employee_id: EmployeeId,
    session: DbSession,
    start: Annotated[
        datetime,
        Query(
            description="Range start (inclusive), ISO 8601 with offset.", examples=_TIME_EXAMPLES
        ),
    ],
    end: Annotated[
        datetime,
        Query(
            description="Range end (exclusive), ISO 8601 with offset.",
            examples=["2026-03-09T00:00:00Z"],
        ),
    ],
    merge: Annotated[bool, Query(description="Merge overlapping and touching intervals.")] = True,
) -> BusyOut:
    start = _aware(start, "start")
    end = _aware(end, "end")
    if end <= start:
        raise InvalidFieldError("end", "must be after start")
    if end - start > MAX_RANGE:
        raise InvalidFieldError("end", "the range may span at most 366 days")
    employee = await service.get_employee(
        session, organization_id=organization_id, employee_id=employee_id
    )
    blocks = await repo.blocks_between(
        session, employee.connection_id, employee.mailbox, start, end
    )
    synced_at = await repo.last_synced_at(session, employee.connection_id, employee.mailbox)
    await session.commit()
    if merge:
        intervals = [BusyInterval(start=s, end=e) for s, e in merge_intervals(blocks)]
    else:
        intervals = [
            BusyInterval(
                start=block.start_at,
                end=block.end_at,
                show_as=block.show_as,
                is_all_day=block.is_all_day,
                subject=block.subject,
            )
            for block in blocks
        ]
    return BusyOut(
        organization_id=organization_id,
        employee_id=employee_id,
        mailbox=employee.mailbox,
        start=start,
        end=end,
        merged=merge,
        synced_at=synced_at,
        intervals=intervals,
    )
