"""Literal documents in bookingtime's shapes: the SDK's own mocks (typos included) and
appointments as the App API renders them (reference §2.4, §3.3)."""

from __future__ import annotations

import copy
from typing import Any

ORG = "f6SampleOrganization000000000001"
OTHER_ORG = "f6SampleOrganization000000000002"
MAX = "brSampleMaxMustermann00000000001"
ERIKA = "brSampleErikaMustermann000000001"

# APP:AppointmentRoute.php listMonth mock.
RANGE_LIST_MOCK = (
    b'{"messageList":[],"content":{"class":"RANGE_LIST","rangeStart":"2024-01-01T00:00:00+01:00",'
    b'"rangeEnd":"2024-01-31T23:59:59+01:00","timeZone":"Europe/Berlin","list":[]}}'
)
# APP:CustomEntityRoute.php list mock.
LIST_MOCK = (
    b'{"messageList":[],"content":{"class":"LIST","recordTotal":0,"recordLimit":9999,'
    b'"recordList":[]}}'
)
# MOD mocks carry counts as strings.
LIST_MOCK_STRING_TOTAL = (
    b'{"messageList":[],"content":{"class":"LIST","recordTotal":"1","recordLimit":9999,'
    b'"recordList":[{"class":"BOOKING_RESOURCE","id":"' + MAX.encode() + b'"}]}}'
)
# APP:AppointmentRoute.php indexMonth mock.
PAGINATION_MOCK = (
    b'{"messageList":[],"content":{"class":"PAGINATION_LIST","pageCurrent":1,"pageTotal":1,'
    b'"recordFrom":1,"recordTo":0,"recordTotal":0,"recordPerPage":25,"recordList":[]}}'
)
# APP:CustomEntityRoute.php show mock: a two-digit year.
CUSTOM_ENTITY_TIMESTAMP = "23-12-08T11:01:16+01:00"
TYPO_DAY = "2024-01-023T10:00:00+01:00"
TYPO_OFFSET = "2024-01-01T18:15:00+0:00"

APPOINTMENT: dict[str, Any] = {
    "class": "APPOINTMENT",
    "id": "edSampleAppointment0000000000001",
    "customId": "mock-appointment",
    "start": "2026-03-27T09:00:00+01:00",
    "end": "2026-03-27T10:30:00+01:00",
    "duration": 90,
    "timeZone": "Europe/Berlin",
    "protected": False,
    "name": "Beratung",
    "nameI18nList": [],
    "description": "Erstgespräch",
    "descriptionI18nList": {"en": "First meeting"},
    "notes": "",
    "showPrice": True,
    "priceGross": 34,
    "taxRate": 19,
    "currency": "EUR",
    "customer": [],
    "address": {
        "name": "Familie Mustermann",
        "street": "teststreet 10",
        "zip": "22453",
        "city": "Hamburg",
        "country": "DE",
    },
    "canceled": False,
    "moved": False,
    "bookingResourceList": [
        {
            "class": "BOOKING_RESOURCE_SHORT",
            "id": MAX,
            "customId": "MA1",
            "category": "EMPLOYEE",
            "name": "Max Mustermann",
            "organizationId": ORG,
        },
    ],
    "fileList": [],
    "organizationId": ORG,
}


def appointment(number: int = 1, **changes: Any) -> dict[str, Any]:
    """The sample appointment with id number `number` and `changes` applied."""
    item = copy.deepcopy(APPOINTMENT)
    item["id"] = f"edSampleAppointment{number:013d}"
    item.update(changes)
    return item


def envelope(content: Any, *messages: dict[str, Any]) -> dict[str, Any]:
    return {"messageList": list(messages), "content": content}


def failure(text: str, parameter: str | None = None) -> dict[str, Any]:
    return envelope(
        [], {"class": "MESSAGE", "type": "failure", "parameter": parameter, "text": text}
    )


def range_list(
    items: list[Any],
    *,
    start: str = "2026-03-23T00:00:00+01:00",
    end: str = "2026-03-29T23:59:59+02:00",
) -> dict[str, Any]:
    return {
        "class": "RANGE_LIST",
        "rangeStart": start,
        "rangeEnd": end,
        "timeZone": "Europe/Berlin",
        "list": items,
    }
