"""A user's calendars as Graph lists them: the sandbox keeps one mailbox calendar per user, the
primary one, so `/calendar` and `/calendars` both name it."""

from __future__ import annotations

import base64
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from app.sandbox.pipeline import graph_base, graph_response, mailbox_request
from app.sandbox.state import User

router = APIRouter()


def render_calendar(user: User) -> dict[str, Any]:
    """The primary calendar with the properties Graph's list example shows for it."""
    calendar_id = base64.urlsafe_b64encode(f"calendar:{user.id}".encode()).decode()
    change_key = base64.b64encode(f"calendar-v1:{user.id}".encode()).decode()
    return {
        "id": calendar_id,
        "name": "Calendar",
        "color": "auto",
        "hexColor": "",
        "isDefaultCalendar": True,
        "changeKey": change_key,
        "canShare": True,
        "canViewPrivateItems": True,
        "canEdit": True,
        "allowedOnlineMeetingProviders": ["teamsForBusiness"],
        "defaultOnlineMeetingProvider": "teamsForBusiness",
        "isTallyingResponses": True,
        "isRemovable": False,
        "owner": {"name": user.display_name, "address": user.user_principal_name},
    }


@router.get("/v1.0/users/{user_ref}/calendar")
async def get_calendar(request: Request, user_ref: str) -> JSONResponse:
    """The primary calendar: what an app with only Calendars.* can read to prove a mailbox."""
    async with mailbox_request(request, user_ref) as call:
        context = f"{graph_base(request)}/$metadata#users('{call.user.id}')/calendar/$entity"
        return graph_response({"@odata.context": context, **render_calendar(call.user)})


@router.get("/v1.0/users/{user_ref}/calendars")
async def list_calendars(request: Request, user_ref: str) -> JSONResponse:
    async with mailbox_request(request, user_ref) as call:
        context = f"{graph_base(request)}/$metadata#users('{call.user.id}')/calendars"
        return graph_response({"@odata.context": context, "value": [render_calendar(call.user)]})
