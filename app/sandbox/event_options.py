"""How a request asks for its events: the Prefer headers (time zone, body type, id form) and the
`$select` and `$expand` query options, read into `RenderOptions` as Graph reads them."""

from __future__ import annotations

import re

from fastapi import Request

from app.sandbox.errors import GraphError
from app.sandbox.event_render import SELECTABLE, RenderOptions
from app.sandbox.timezones import resolve

_PREFER = re.compile(r'([\w.-]+)\s*=\s*(?:"([^"]*)"|([^,;\s]+))')
# An OData string literal; a quote inside it is doubled.
ODATA_STRING = r"'((?:[^']|'')*)'"
_EXPAND = re.compile(
    r"^singleValueExtendedProperties\(\$filter="
    rf"(id eq {ODATA_STRING}(?:\s+or\s+id eq {ODATA_STRING})*)\)$",
    re.IGNORECASE,
)
_EXPAND_ID = re.compile(rf"id eq {ODATA_STRING}", re.IGNORECASE)


def unquote_odata(value: str) -> str:
    return value.replace("''", "'")


def preferences(request: Request) -> dict[str, str]:
    """Every `Prefer` header's preferences, by case-folded name."""
    prefs: dict[str, str] = {}
    for header in request.headers.getlist("prefer"):
        for match in _PREFER.finditer(header):
            prefs[match.group(1).casefold()] = match.group(2) or match.group(3) or ""
    return prefs


def render_options(
    request: Request, *, allow_query: bool = True
) -> tuple[RenderOptions, dict[str, str]]:
    """Render options from Prefer and the query, plus the Preference-Applied header."""
    prefs = preferences(request)
    applied = []
    time_zone = prefs.get("outlook.timezone")
    if time_zone is not None:
        resolve(time_zone)  # an unknown zone is Graph's TimeZoneNotSupportedException
        applied.append(f'outlook.timezone="{time_zone}"')
    body_type = prefs.get("outlook.body-content-type")
    if body_type is not None:
        body_type = body_type.casefold()
        if body_type in ("text", "html"):
            applied.append(f'outlook.body-content-type="{body_type}"')
        else:
            body_type = None
    immutable = prefs.get("idtype", "").casefold() == "immutableid"
    if immutable:
        applied.append('IdType="ImmutableId"')
    select = expand = None
    if allow_query:
        select = _select(request.query_params.get("$select"))
        expand = _expand(request.query_params.get("$expand"))
    options = RenderOptions(
        time_zone=time_zone or "UTC",
        immutable_ids=immutable,
        body_type=body_type,
        select=select,
        expand_extended=expand,
    )
    headers = {"Preference-Applied": ", ".join(applied)} if applied else {}
    return options, headers


def _select(raw: str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    names = []
    for part in raw.split(","):
        name = SELECTABLE.get(part.strip().casefold())
        if name is None:
            raise GraphError(
                400,
                "RequestBroker--ParseUri",
                f"Could not find a property named '{part.strip()}' on type"
                " 'microsoft.graph.event'.",
            )
        names.append(name)
    return tuple(names)


def _expand(raw: str | None) -> tuple[str, ...] | None:
    if raw is None:
        return None
    if _EXPAND.match(raw.strip()) is None:
        raise GraphError(
            400,
            "BadRequest",
            f"Parsing OData Select and Expand failed: Term '{raw}' is not supported.",
        )
    return tuple(unquote_odata(m.group(1)) for m in _EXPAND_ID.finditer(raw))
