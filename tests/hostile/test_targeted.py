"""Targeted abuse of each surface: bodies that lie about their size, nest without end or are not
UTF-8, header floods on the real server, replays, markup in Graph's validation token and path
tricks in ids. Each answer is an exact problem, and nothing is stored.

What tests/bookingtime/test_intake.py and tests/outlook/test_notifications.py already prove
(oversized and chunked webhooks, `[` × 100,000 and invalid UTF-8 on the bookingtime intake,
stale timestamps, the validation token's markup and cap) is not repeated here.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from types import SimpleNamespace
from urllib.parse import quote

import httpx
import pytest

from app.admin.router import MAX_BODY_BYTES as ADMIN_MAX_BODY_BYTES
from app.bookingtime import signature
from app.db import Database
from tests.bookingtime.helpers import URL, encode, sample, sign
from tests.helpers import assert_problem
from tests.hostile.conftest import Served, row_counts

GRAPH_PATHS = ["/webhooks/graph/notifications", "/webhooks/graph/lifecycle"]
ORG = "f6AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
ONE_MIB = 1024 * 1024
DEEP_ARRAY = b"[" * 100_000 + b"]" * 100_000
DEEP_OBJECT = b'{"a": ' * 100_000 + b"1" + b"}" * 100_000


async def _chunks(body: bytes, size: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


# --- bookingtime webhook ------------------------------------------------------------------------


async def test_webhook_with_a_lying_content_length_is_413(
    client: httpx.AsyncClient, database: Database, connection_id: int
) -> None:
    """The length is counted as the body streams, whatever Content-Length claims."""
    event = sample("appointment_created")
    event["data"]["appointment"]["notes"] = "x" * ONE_MIB
    body = encode(event)
    headers = sign(body) | {"content-length": "100"}
    before = await row_counts(database)

    request = client.build_request("POST", URL, content=_chunks(body), headers=headers)
    assert request.headers["content-length"] == "100"
    response = await client.send(request)

    assert_problem(response, 413, "payload_too_large")
    assert await row_counts(database) == before


@pytest.mark.parametrize(
    "body",
    [
        DEEP_OBJECT,
        b'{"type": "appointment.created", "timestamp": "2025-06-01T08:00:00Z", "data": '
        + DEEP_ARRAY
        + b"}",
    ],
    ids=["objects", "arrays-inside-data"],
)
async def test_webhook_nested_without_end_is_400(
    client: httpx.AsyncClient, database: Database, connection_id: int, body: bytes
) -> None:
    before = await row_counts(database)
    response = await client.post(URL, content=body, headers=sign(body))
    assert_problem(response, 400, "invalid_json")
    assert await row_counts(database) == before


async def test_replays_are_stored_once_and_refused_after_the_tolerance(
    client: httpx.AsyncClient,
    database: Database,
    connection_id: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A captured delivery sent again byte for byte: within the tolerance it is a duplicate
    (stored once); once its timestamp is stale it is refused before anything is looked at."""
    body = encode(sample("appointment_created"))
    headers = sign(body)
    empty = await row_counts(database)

    first = await client.post(URL, content=body, headers=headers)
    assert first.status_code == 202, first.text
    stored = await row_counts(database)
    assert stored["inbox_event"] == empty["inbox_event"] + 1
    assert stored["job"] == empty["job"] + 1

    replay = await client.post(URL, content=body, headers=headers)
    assert replay.status_code == 200
    assert replay.json() == {"status": "duplicate"}
    assert await row_counts(database) == stored

    # Six minutes later on the server's clock (the tolerance is ±5 minutes).
    later = time.time() + 6 * 60
    monkeypatch.setattr(signature, "time", SimpleNamespace(time=lambda: later))
    late = await client.post(URL, content=body, headers=headers)
    assert_problem(late, 401, "stale_timestamp")
    assert await row_counts(database) == stored


async def test_a_declared_huge_body_is_refused_without_waiting_for_it(
    served: Served, database: Database, connection_id: int
) -> None:
    """On the real server: Content-Length claims 1 TB and only a few bytes follow. The answer is
    an immediate 413, not a wait for bytes that never come."""
    body = b'{"type": "appointment.created"}'
    headers = sign(body) | {
        "content-length": str(10**12),
        "host": "calbridge.test",
        "connection": "close",
    }
    head = f"POST {URL} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    before = await row_counts(database)

    started = time.monotonic()
    answer = await served.exchange(head.encode() + b"\r\n" + body, within=5)

    assert answer.startswith(b"HTTP/1.1 413 "), answer[:200]
    assert b"application/problem+json" in answer
    assert b'"code":"payload_too_large"' in answer
    assert time.monotonic() - started < 3
    assert await row_counts(database) == before


# --- header floods (real uvicorn) ---------------------------------------------------------------


def _get(path: str, extra: bytes = b"") -> bytes:
    head = f"GET {path} HTTP/1.1\r\nHost: calbridge.test\r\nConnection: close\r\n"
    return head.encode() + extra + b"\r\n"


def _status(answer: bytes) -> int:
    assert answer.startswith(b"HTTP/1.1 "), answer[:200]
    return int(answer[9:12])


@pytest.mark.parametrize(
    "flood",
    [
        b"".join(b"X-Flood-%d: v\r\n" % i for i in range(10_000)),
        b"X-Huge: " + b"a" * (1024 * 1024) + b"\r\n",
        b"Authorization: Bearer " + b"a" * (256 * 1024) + b"\r\n",
    ],
    ids=["10000-headers", "1mib-header", "256kib-token"],
)
async def test_header_floods_are_refused_with_431(
    served: Served, database: Database, flood: bytes
) -> None:
    """Many headers or one enormous one: uvicorn with httptools (what `calbridge serve` runs)
    sets no header limits of its own, so calbridge refuses them itself, before any route, with a
    431 problem, and keeps serving."""
    before = await row_counts(database)
    for path in ("/healthz", "/api/v1/connections", f"/api/v1/connections/{ORG}"):
        answer = await served.exchange(_get(path, flood))
        assert _status(answer) == 431, answer[:300]
        assert b'"code":"headers_too_large"' in answer, answer[:600]
    after = await served.exchange(_get("/healthz"))
    assert _status(after) == 200
    assert await row_counts(database) == before


async def test_a_header_flood_on_a_webhook_stores_nothing(
    served: Served, database: Database, connection_id: int
) -> None:
    body = encode(sample("appointment_created"))
    headers = sign(body) | {
        "host": "calbridge.test",
        "content-length": str(len(body)),
        "connection": "close",
    }
    signed_head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    before = await row_counts(database)

    # Signed or not, a flooded delivery is refused before its signature is even looked at.
    for flood in (
        "".join(f"X-Flood-{i}: v\r\n" for i in range(101)),
        "X-Huge: " + "a" * (32 * 1024) + "\r\n",
    ):
        answer = await served.exchange(
            f"POST {URL} HTTP/1.1\r\n{flood}{signed_head}\r\n".encode() + body
        )
        assert _status(answer) == 431, answer[:300]
        assert await row_counts(database) == before

    # Just under the limits, the same delivery is stored once.
    flood = "".join(f"X-Flood-{i}: v\r\n" for i in range(90))
    answer = await served.exchange(
        f"POST {URL} HTTP/1.1\r\n{flood}{signed_head}\r\n".encode() + body
    )
    assert _status(answer) == 202, answer[:300]
    assert (await row_counts(database))["inbox_event"] == before["inbox_event"] + 1


# --- Graph notifications and lifecycle ----------------------------------------------------------


@pytest.mark.parametrize("path", GRAPH_PATHS)
@pytest.mark.parametrize(
    "token",
    [
        "<script>alert(1)</script>",
        "<html><body onload=alert(1)>&amp;</body></html>",
        "line\r\nContent-Type: text/html\r\n\r\n<b>injected</b>",
        "Überprüfung ✓ <img src=x onerror=alert(1)>",
    ],
    ids=["script", "document", "crlf", "unicode"],
)
async def test_validation_token_is_echoed_as_inert_plain_text(
    client: httpx.AsyncClient, database: Database, path: str, token: str
) -> None:
    before = await row_counts(database)
    response = await client.post(
        f"{path}?validationToken={quote(token)}", headers={"accept": "text/html"}
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.content == token.encode()
    # The token is a body, never a header: a CRLF in it adds none.
    assert response.headers.get_list("content-type") == ["text/plain; charset=utf-8"]
    assert await row_counts(database) == before


@pytest.mark.parametrize("path", GRAPH_PATHS)
@pytest.mark.parametrize(
    "body",
    [
        DEEP_ARRAY,
        b'{"value": ' + DEEP_ARRAY + b"}",
        DEEP_OBJECT,
        b'{"value": [{"subscriptionId": "\xff\xfe"}]}',
    ],
    ids=["deep-array", "deep-value", "deep-object", "invalid-utf8"],
)
async def test_notification_bodies_that_cannot_be_read_are_400(
    client: httpx.AsyncClient, database: Database, path: str, body: bytes
) -> None:
    before = await row_counts(database)
    response = await client.post(path, content=body, headers={"content-type": "application/json"})
    assert_problem(response, 400, "invalid_json")
    assert await row_counts(database) == before


@pytest.mark.parametrize("path", GRAPH_PATHS)
async def test_notification_with_a_lying_content_length_is_413(
    client: httpx.AsyncClient, database: Database, path: str
) -> None:
    body = b'{"value": [' + b'{"a": 1},' * (ONE_MIB // 8) + b"{}]}"
    before = await row_counts(database)
    request = client.build_request(
        "POST", path, content=_chunks(body), headers={"content-length": "16"}
    )
    response = await client.send(request)
    assert_problem(response, 413, "payload_too_large")
    assert await row_counts(database) == before


# --- ids in paths -------------------------------------------------------------------------------

LONG = "a" * 10_000
PATHS: list[tuple[str, str, int, str]] = [
    # (method, path as sent, status, code)
    ("GET", "/api/v1/connections/..%2F..%2Fetc", 404, "not_found"),
    ("GET", "/api/v1/connections/..%2F..%2Fetc%2Fpasswd", 404, "not_found"),
    ("PUT", "/api/v1/connections/..%2F..%2Fetc", 404, "not_found"),
    ("DELETE", "/api/v1/connections/..%2F..", 404, "not_found"),
    ("GET", "/api/v1/connections/%2E%2E", 422, "validation_failed"),
    ("GET", "/api/v1/connections/%00", 422, "validation_failed"),
    ("GET", "/api/v1/connections/f6%00AAAA", 422, "validation_failed"),
    ("PUT", "/api/v1/connections/%00", 422, "validation_failed"),
    ("DELETE", "/api/v1/connections/%00", 422, "validation_failed"),
    ("GET", f"/api/v1/connections/{LONG}", 422, "validation_failed"),
    ("PUT", f"/api/v1/connections/{LONG}", 422, "validation_failed"),
    ("GET", "/api/v1/connections/%C3%B6rg", 422, "validation_failed"),
    ("GET", "/api/v1/connections/%EF%BC%8E%EF%BC%8E", 422, "validation_failed"),  # fullwidth ..
    ("GET", "/api/v1/connections/%F0%9F%98%80", 422, "validation_failed"),
    ("GET", f"/api/v1/connections/{ORG}/employees/..%2F..%2F..", 404, "not_found"),
    ("GET", f"/api/v1/connections/{ORG}/employees/%00", 422, "validation_failed"),
    ("PUT", f"/api/v1/connections/{ORG}/employees/{LONG}", 422, "validation_failed"),
    ("GET", f"/api/v1/connections/{ORG}/employees/%E2%80%AEbr", 422, "validation_failed"),
    ("POST", "/api/v1/jobs/9223372036854775808/retry", 422, "validation_failed"),
    ("POST", "/api/v1/jobs/99999999999999999999999999/retry", 422, "validation_failed"),
    ("POST", "/api/v1/jobs/-1/retry", 422, "validation_failed"),
    ("POST", "/api/v1/jobs/1e3/retry", 422, "validation_failed"),
    ("POST", "/api/v1/jobs/..%2F..%2F1/retry", 404, "not_found"),
    ("POST", "/api/v1/subscriptions/9223372036854775808/renew", 422, "validation_failed"),
    ("DELETE", "/api/v1/subscriptions/9223372036854775808", 422, "validation_failed"),
    ("POST", "/webhooks/bookingtime/..%2F..%2Fapi%2Fv1%2Fconnections", 404, "not_found"),
    ("POST", "/webhooks/bookingtime/%00", 404, "unknown_organization"),
    ("POST", f"/webhooks/bookingtime/{LONG}", 404, "unknown_organization"),
    ("POST", "/webhooks/bookingtime/%C3%B6rg", 404, "unknown_organization"),
]


@pytest.mark.parametrize(("method", "path", "status", "code"), PATHS)
async def test_hostile_ids_in_paths_are_problems(
    client: httpx.AsyncClient,
    database: Database,
    admin_headers: dict[str, str],
    method: str,
    path: str,
    status: int,
    code: str,
) -> None:
    before = await row_counts(database)
    json_body = {"mailbox": "max@contoso.example"} if "employees" in path else None
    if method == "PUT" and "employees" not in path:
        json_body = {"tenant": "contoso.onmicrosoft.com", "client_id": ORG, "client_secret": "x"}
    response = await client.request(method, path, headers=admin_headers, json=json_body)
    assert_problem(response, status, code)
    assert await row_counts(database) == before


@pytest.mark.parametrize(
    ("path", "methods"),
    [
        (f"/api/v1/connections/{ORG}", {"GET", "PUT", "DELETE"}),
        (
            f"/api/v1/connections/{ORG}/employees/brAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
            {"GET", "PUT", "DELETE"},
        ),
    ],
)
async def test_405_allows_every_method_of_the_path(
    client: httpx.AsyncClient, admin_headers: dict[str, str], path: str, methods: set[str]
) -> None:
    """Each FastAPI operation is a route of its own; `Allow` still names them all."""
    response = await client.request("PATCH", path, headers=admin_headers)
    assert_problem(response, 405, "method_not_allowed")
    assert set(response.headers["allow"].split(", ")) == methods | {"HEAD"}


# --- admin API bodies ---------------------------------------------------------------------------

# Nested far beyond Python's recursion limit, yet within the admin body cap.
ADMIN_BODIES = [
    (b"[" * 30_000 + b"]" * 30_000, 400, "bad_request"),
    (b'{"a":' * 10_000 + b"1" + b"}" * 10_000, 400, "bad_request"),
    (
        b'{"tenant": "contoso.onmicrosoft.com", "client_id": "\xff", "client_secret": "x"}',
        400,
        "bad_request",
    ),
    (b'{"tenant": "' + b"x" * ADMIN_MAX_BODY_BYTES + b'"}', 413, "payload_too_large"),
]
ADMIN_TARGETS = [
    ("PUT", f"/api/v1/connections/{ORG}"),
    ("POST", f"/api/v1/connections/{ORG}/verify"),
    ("PUT", f"/api/v1/connections/{ORG}/employees/brAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_TARGETS)
@pytest.mark.parametrize(
    ("body", "status", "code"),
    ADMIN_BODIES,
    ids=["deep-array", "deep-object", "invalid-utf8", "oversized"],
)
@pytest.mark.parametrize("authorized", [True, False], ids=["admin", "anonymous"])
async def test_admin_bodies_that_cannot_be_read_are_problems(
    client: httpx.AsyncClient,
    database: Database,
    admin_headers: dict[str, str],
    method: str,
    path: str,
    body: bytes,
    status: int,
    code: str,
    authorized: bool,
) -> None:
    """Answered before authentication (FastAPI reads the body first), so the anonymous answer
    is the same: what matters is that it is a problem, never a 500, and nothing is stored."""
    headers = {"content-type": "application/json"} | (admin_headers if authorized else {})
    before = await row_counts(database)
    response = await client.request(method, path, content=body, headers=headers)
    assert_problem(response, status, code)
    assert await row_counts(database) == before


@pytest.mark.parametrize("authorized", [True, False], ids=["admin", "anonymous"])
async def test_admin_body_streamed_past_the_cap_is_413(
    client: httpx.AsyncClient, database: Database, admin_headers: dict[str, str], authorized: bool
) -> None:
    """Chunked (no Content-Length) or with a Content-Length that lies: counted as it streams."""
    body = b'{"tenant": "' + b"x" * (4 * ADMIN_MAX_BODY_BYTES) + b'"}'
    headers = {"content-type": "application/json"} | (admin_headers if authorized else {})
    before = await row_counts(database)
    for extra in ({}, {"content-length": "64"}):
        request = client.build_request(
            "PUT",
            f"/api/v1/connections/{ORG}",
            content=_chunks(body, 8192),
            headers=headers | extra,
        )
        response = await client.send(request)
        assert_problem(response, 413, "payload_too_large")
    assert await row_counts(database) == before
