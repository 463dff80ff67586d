"""A whole collection answered two ways (reference §2.4): as `list`, a LIST shortened to the
`list_limit` switch, and as `index/{page}`, PAGINATION_LIST pages of 25. Both take the records
in the same order, so the pages add up to the list."""

from __future__ import annotations

import re
from typing import Any

from fastapi.responses import JSONResponse

from app.sandbox.bookingtime import render
from app.sandbox.bookingtime.envelope import NOT_VALID, BookingtimeError, respond
from app.sandbox.bookingtime.store import Switches

_PAGE = re.compile(r"\d{1,9}")


def page_number(value: str) -> int:
    """The 1-based page of an `index/{page}` URL; anything else is a 400 naming `page`."""
    if _PAGE.fullmatch(value) is None or int(value) < 1:
        raise BookingtimeError(400, NOT_VALID, parameter="page")
    return int(value)


def whole(records: list[dict[str, Any]], switches: Switches) -> JSONResponse:
    return respond(render.record_list(records, switches.list_limit))


def paged(records: list[dict[str, Any]], page: int) -> JSONResponse:
    return respond(render.pagination_list(records, page))
