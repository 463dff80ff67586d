"""Appointment reads of the App API: RANGE_LISTs by ISO week, month and day in the organisation's
time zone (an appointment belongs to every range it overlaps), show, and identify by customId."""

from __future__ import annotations

import re
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.sandbox.bookingtime import render
from app.sandbox.bookingtime.auth import OrganizationOf, store_of
from app.sandbox.bookingtime.envelope import API_PATH, NOT_VALID, BookingtimeError, respond
from app.sandbox.bookingtime.store import Appointment, Organization

ORGANIZATION_PATH = API_PATH + "/{locale}/organization/{organization_id}"
router = APIRouter(prefix=ORGANIZATION_PATH + "/appointment")

_NUMBER = re.compile(r"\d{1,4}")
YEARS = range(1970, 2200)


def _number(value: str, parameter: str, allowed: range) -> int:
    if _NUMBER.fullmatch(value) is None or int(value) not in allowed:
        raise BookingtimeError(400, NOT_VALID, parameter=parameter)
    return int(value)


def _local_midnight(day: date, zone: ZoneInfo) -> datetime:
    return datetime.combine(day, time(0), tzinfo=zone)


def _overlaps(item: Appointment, start: datetime, end: datetime) -> bool:
    if item.start == item.end:  # a zero-length appointment belongs where it starts
        return start <= item.start < end
    return item.start < end and item.end > start


def _range_list(
    request: Request, org: Organization, first_day: date, days_after_last: date
) -> JSONResponse:
    store = store_of(request)
    zone = ZoneInfo(org.time_zone)
    start, end = _local_midnight(first_day, zone), _local_midnight(days_after_last, zone)
    with store.lock:
        switches = store.switches
        items = sorted(
            (
                item
                for item in org.appointments.values()
                if _overlaps(item, start, end) and (switches.list_canceled or not item.canceled)
            ),
            key=lambda item: (item.start, item.id),
        )
        records = [render.appointment(item, org, switches) for item in items]
    return respond(render.range_list(start, end, org.time_zone, records))


@router.get("/year/{year}/week/{week}/listWeek")
async def list_week(request: Request, org: OrganizationOf, year: str, week: str) -> JSONResponse:
    y = _number(year, "year", YEARS)
    w = _number(week, "week", range(1, 54))
    try:
        monday = date.fromisocalendar(y, w, 1)
    except ValueError:
        raise BookingtimeError(400, NOT_VALID, parameter="week") from None  # no week 53 that year
    return _range_list(request, org, monday, monday + timedelta(days=7))


@router.get("/year/{year}/month/{month}/listMonth")
async def list_month(request: Request, org: OrganizationOf, year: str, month: str) -> JSONResponse:
    y = _number(year, "year", YEARS)
    m = _number(month, "month", range(1, 13))
    following = date(y + 1, 1, 1) if m == 12 else date(y, m + 1, 1)
    return _range_list(request, org, date(y, m, 1), following)


@router.get("/year/{year}/month/{month}/day/{day}/listDay")
async def list_day(
    request: Request, org: OrganizationOf, year: str, month: str, day: str
) -> JSONResponse:
    y = _number(year, "year", YEARS)
    m = _number(month, "month", range(1, 13))
    d = _number(day, "day", range(1, 32))
    try:
        first = date(y, m, d)
    except ValueError:
        raise BookingtimeError(400, NOT_VALID, parameter="day") from None
    return _range_list(request, org, first, first + timedelta(days=1))


def _shown(request: Request, org: Organization, item: Appointment | None) -> JSONResponse:
    store = store_of(request)
    if item is None:
        raise BookingtimeError(404, "Appointment not found.", parameter="appointmentId")
    with store.lock:
        return respond(render.appointment(item, org, store.switches))


@router.get("/{appointment_id}/show")
async def show(request: Request, org: OrganizationOf, appointment_id: str) -> JSONResponse:
    with store_of(request).lock:
        item = org.appointments.get(appointment_id)
    return _shown(request, org, item)


@router.get("/{custom_id}/identify")
async def identify(request: Request, org: OrganizationOf, custom_id: str) -> JSONResponse:
    with store_of(request).lock:
        item = org.appointment_by_custom_id(custom_id)
    if item is None:
        raise BookingtimeError(404, "Appointment not found.", parameter="customId")
    return _shown(request, org, item)
