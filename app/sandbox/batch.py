"""Graph's JSON batching (`POST /v1.0/$batch`, graph-protocol.md §4): each item is dispatched
in-process through the sandbox's own ASGI app, so auth, policy, faults and throttling apply to
each item on its own."""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from starlette.types import Message, Scope

from app.sandbox import errors
from app.sandbox.asgi import SandboxASGI
from app.sandbox.errors import GraphError
from app.sandbox.pipeline import Dropped, authenticate, graph_response, runtime_of

router = APIRouter()

MAX_REQUESTS = 20
# throttling-limits: for Outlook, Graph runs at most 4 requests of one batch at once.
BATCH_CONCURRENCY = 4
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
DROPPED_STATUS = 499  # what app.py answers once an item's fault has cut the batch's connection
# Set by the batch for every item, whatever the item says.
_OVERRIDDEN = frozenset({"authorization", "host", "content-length"})
# Front-door headers: the batch response carries them, an item's own response does not.
_NOT_ITEM_HEADERS = frozenset({"content-length", "x-ms-ags-diagnostic"})
_HEADER_CASE = {"odata-version": "OData-Version", "etag": "ETag"}
_LOWER_HEADERS = frozenset({"request-id", "client-request-id"})


def _bad_request(message: str) -> GraphError:
    return GraphError(400, "BadRequest", message)


@dataclass
class Item:
    id: str
    method: str
    path: str  # decoded, under /v1.0
    raw_path: bytes
    query: bytes
    headers: dict[str, str]  # names lower-cased
    body: bytes
    depends_on: list[str]  # casefolded ids of earlier items


def _parse_body(item_id: str, body: Any, headers: dict[str, str]) -> bytes:
    if body is None:
        return b""
    content_type = headers.get("content-type")
    if content_type is None:
        # json-batching.md: headers are required with a body and must carry Content-Type.
        raise _bad_request(f"Write request id : {item_id} does not contain Content-Type header.")
    if "json" in content_type.casefold():
        return json.dumps(body).encode()
    if not isinstance(body, str):
        raise _bad_request(f"Invalid body for request id : {item_id}.")
    try:
        # json-batching.md: a body that is not JSON travels base64-encoded.
        return base64.b64decode(body, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise _bad_request(f"Invalid body for request id : {item_id}.") from exc


def _parse_url(item_id: str, url: Any) -> tuple[str, bytes, bytes]:
    if not isinstance(url, str) or not url.strip():
        raise _bad_request(f"Missing url for request id : {item_id}.")
    url = url.strip()
    if "://" in url or url.startswith("//"):
        raise _bad_request(f"The url of request id : {item_id} must be relative.")
    raw_path, _, query = url.partition("?")
    raw_path = "/" + raw_path.lstrip("/")
    if raw_path.rstrip("/").casefold() == "/$batch":
        raise _bad_request("Nested batch requests are not supported.")
    full = "/v1.0" + raw_path
    return unquote(full), full.encode(), query.encode()


def _parse_headers(item_id: str, headers: Any) -> dict[str, str]:
    if headers is None:
        return {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise _bad_request(f"Invalid headers for request id : {item_id}.")
    try:
        for name, value in headers.items():  # HTTP headers are latin-1 on the wire
            str(name).encode("latin-1")
            value.encode("latin-1")
    except UnicodeEncodeError as exc:
        raise _bad_request(f"Invalid headers for request id : {item_id}.") from exc
    return {str(k).casefold(): v for k, v in headers.items()}


def parse_batch(payload: Any) -> list[Item]:
    """The batch's items, or Graph's 400 for a malformed batch (nothing runs then)."""
    if not isinstance(payload, dict) or not isinstance(payload.get("requests"), list):
        raise _bad_request("Invalid batch payload format.")
    raw_items: list[Any] = payload["requests"]
    if not raw_items:
        raise _bad_request("Invalid batch payload format.")
    if len(raw_items) > MAX_REQUESTS:
        raise _bad_request(f"The number of requests in a batch cannot exceed {MAX_REQUESTS}.")
    items: list[Item] = []
    seen: set[str] = set()
    for raw in raw_items:
        if not isinstance(raw, dict):
            raise _bad_request("Invalid batch payload format.")
        item_id = raw.get("id")
        if not isinstance(item_id, str) or not item_id.strip():
            raise _bad_request("Every request in a batch needs a string id.")
        key = item_id.casefold()  # ids compare ignoring case (json-batching.md)
        if key in seen:
            raise _bad_request(f"Request id : {item_id} is duplicated in the batch.")
        method = raw.get("method")
        if not isinstance(method, str) or method.upper() not in METHODS:
            raise _bad_request(f"Invalid method for request id : {item_id}.")
        path, raw_path, query = _parse_url(item_id, raw.get("url"))
        headers = _parse_headers(item_id, raw.get("headers"))
        body = _parse_body(item_id, raw.get("body"), headers)
        depends_on = raw.get("dependsOn") or []
        if not isinstance(depends_on, list) or not all(isinstance(d, str) for d in depends_on):
            raise _bad_request(f"Invalid dependsOn for request id : {item_id}.")
        for dependency in depends_on:
            # Only earlier items may be named (Graph rejects out-of-order dependencies), which
            # also rules out cycles and self-references.
            if dependency.casefold() not in seen:
                raise _bad_request(
                    f"Request id : {item_id} depends on '{dependency}', which is not an earlier"
                    " request in the batch."
                )
        seen.add(key)
        items.append(
            Item(
                item_id,
                method.upper(),
                path,
                raw_path,
                query,
                headers,
                body,
                [d.casefold() for d in depends_on],
            )
        )
    return items


def _header_name(name: str) -> str:
    if name in _LOWER_HEADERS:
        return name
    return _HEADER_CASE.get(name) or "-".join(part.capitalize() for part in name.split("-"))


class Dispatcher:
    """Runs items through the sandbox's ASGI stack as if each had arrived on its own."""

    def __init__(self, request: Request) -> None:
        self._app = SandboxASGI(request.app, runtime_of(request))
        self._outer = request.scope
        outer_headers = dict(request.scope["headers"])
        self._authorization = outer_headers.get(b"authorization", b"")
        self._host = outer_headers.get(b"host", b"")
        self._client_request_id = request.scope.get("sandbox.client_request_id", "")
        self._receive_outer = request.receive

    def _scope(self, item: Item) -> Scope:
        headers = {k: v for k, v in item.headers.items() if k not in _OVERRIDDEN}
        # The caller's correlation id follows its items unless an item brings its own.
        headers.setdefault("client-request-id", self._client_request_id)
        raw_headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in headers.items()]
        raw_headers += [(b"host", self._host), (b"authorization", self._authorization)]
        if item.body:
            raw_headers.append((b"content-length", str(len(item.body)).encode()))
        return {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": self._outer.get("http_version", "1.1"),
            "method": item.method,
            "scheme": self._outer.get("scheme", "https"),
            "server": self._outer.get("server"),
            "client": self._outer.get("client"),
            "root_path": "",
            "path": item.path,
            "raw_path": item.raw_path,
            "query_string": item.query,
            "headers": raw_headers,
            "sandbox.drop": self._outer["sandbox.drop"],
            "sandbox.hang": self._outer["sandbox.hang"],
        }

    async def run(self, item: Item) -> dict[str, Any]:
        sent_body = False

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": item.body, "more_body": False}
            # After its body, an item's client leaving is the batch's client leaving.
            return await self._receive_outer()

        status: int | None = None
        headers: list[tuple[bytes, bytes]] = []
        chunks: list[bytes] = []

        async def send(message: Message) -> None:
            nonlocal status, headers
            if message["type"] == "http.response.start":
                status = int(message["status"])
                headers = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        try:
            await self._app(self._scope(item), receive, send)
        except Dropped:
            raise
        except Exception:
            # ServerErrorMiddleware re-raises after answering 500; the item keeps that answer.
            if status is None:
                status = 500
        if status is None or status == DROPPED_STATUS:
            raise Dropped
        return self._response(item.id, status, headers, b"".join(chunks))

    @staticmethod
    def _response(
        item_id: str, status: int, raw_headers: list[tuple[bytes, bytes]], payload: bytes
    ) -> dict[str, Any]:
        headers: dict[str, str] = {}
        for raw_name, raw_value in raw_headers:
            name = raw_name.decode("latin-1").casefold()
            if name not in _NOT_ITEM_HEADERS:
                headers[_header_name(name)] = raw_value.decode("latin-1")
        body: Any = None
        if payload:
            if "json" in headers.get("Content-Type", "").casefold():
                body = json.loads(payload)
            else:
                # json-batching.md: a body that is not JSON comes back base64-encoded.
                body = base64.b64encode(payload).decode()
        return {"id": item_id, "status": status, "headers": headers, "body": body}


async def _run_sequential(
    dispatcher: Dispatcher,
    items: list[Item],
    dependency_error: Callable[[Item, str], dict[str, Any]],
) -> list[dict[str, Any]]:
    """dependsOn batches run one item at a time, in order; a failed dependency fails its
    dependents with 424 without running them (and they count as failed in turn)."""
    responses: list[dict[str, Any]] = []
    failed: set[str] = set()
    for item in items:
        broken = next((d for d in item.depends_on if d in failed), None)
        response: dict[str, Any]
        if broken is not None:
            response = {
                "id": item.id,
                "status": 424,
                "headers": {"Content-Type": "application/json"},
                "body": dependency_error(item, broken),
            }
        else:
            response = await dispatcher.run(item)
        if not 200 <= response["status"] < 300:
            failed.add(item.id.casefold())
        responses.append(response)
    return responses


async def _run_parallel(dispatcher: Dispatcher, items: list[Item]) -> list[dict[str, Any]]:
    slots = asyncio.Semaphore(BATCH_CONCURRENCY)
    responses: list[dict[str, Any]] = []

    async def one(item: Item) -> None:
        async with slots:
            # Appended as each finishes: Graph does not keep the request order either.
            responses.append(await dispatcher.run(item))

    tasks = [asyncio.create_task(one(item)) for item in items]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        raise
    return responses


@router.post("/v1.0/$batch")
async def batch(request: Request) -> JSONResponse:
    raw = await request.body()
    # The batch needs a valid token but no consent and no mailbox slot: only its items do.
    authenticate(request)
    if "application/json" not in request.headers.get("content-type", "").casefold():
        raise errors.bad_json()
    try:
        payload = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise errors.bad_json() from exc
    items = parse_batch(payload)
    dispatcher = Dispatcher(request)
    runtime = runtime_of(request)

    def dependency_error(item: Item, dependency: str) -> dict[str, Any]:
        error = GraphError(
            424,
            "FailedDependency",
            f"Request id : {item.id} was not run: its dependency '{dependency}' failed.",
        )
        return errors.graph_error_body(
            error,
            now=runtime.state.clock.now(),
            request_id=request.scope.get("sandbox.request_id", ""),
            client_request_id=request.scope.get("sandbox.client_request_id"),
        )

    if any(item.depends_on for item in items):
        # "Batch should be either fully sequential or fully parallel": one dependsOn makes the
        # whole batch sequential, in request order.
        responses = await _run_sequential(dispatcher, items, dependency_error)
    else:
        responses = await _run_parallel(dispatcher, items)
    return graph_response({"responses": responses})
