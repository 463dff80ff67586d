"""The webhook lane: raw-request routes answered ahead of FastAPI's router and middleware, with
the same header limit, request ids and problem documents the stack gives every other route."""

from __future__ import annotations

import re
from typing import Any

import httpx
import pytest
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from app import logs
from app.problems import ProblemError, install_problem_handlers
from app.routing import MAX_HEADER_COUNT, HeaderLimitMiddleware, RawRequestRoute
from app.webhook_lane import install_webhook_lane, lane_routes


class CountingMiddleware:
    """Counts the requests that went down the stack."""

    def __init__(self, app: ASGIApp, seen: list[str]) -> None:
        self.app = app
        self.seen = seen

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.seen.append(scope["path"])
        await self.app(scope, receive, send)


def build_app(stack: list[str]) -> FastAPI:
    router = APIRouter(route_class=RawRequestRoute)

    @router.post("/hooks/{org}")
    async def hook(request: Request, org: str) -> JSONResponse:
        body = await request.body()
        if body == b"problem":
            raise ProblemError(409, "conflicted", "A conflict", detail="as asked")
        if body == b"crash":
            raise RuntimeError("crash")
        return JSONResponse(
            {"org": org, "body": body.decode(), "context": dict(logs.current_context())},
            status_code=202,
        )

    app = FastAPI()
    install_problem_handlers(app)
    app.add_middleware(CountingMiddleware, seen=stack)
    app.add_middleware(HeaderLimitMiddleware)
    logs.install_request_ids(app)
    install_webhook_lane(app, [router])
    app.include_router(router)

    @app.get("/other")
    async def other() -> dict[str, str]:
        return {"status": "ok"}

    return app


@pytest.fixture
async def client_and_stack() -> Any:
    stack: list[str] = []
    transport = httpx.ASGITransport(app=build_app(stack), raise_app_exceptions=False)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        yield client, stack


async def test_a_webhook_skips_the_stack_but_keeps_its_request_id(client_and_stack: Any) -> None:
    client, stack = client_and_stack
    kept = await client.post("/hooks/f6Org", content=b"hello", headers={"X-Request-ID": "up-1"})
    fresh = await client.post("/hooks/f6Org", content=b"again")
    assert kept.status_code == 202
    assert kept.json() == {"org": "f6Org", "body": "hello", "context": {"request_id": "up-1"}}
    assert kept.headers.get_list("x-request-id") == ["up-1"]
    generated = fresh.headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    assert fresh.json()["context"] == {"request_id": generated}
    assert stack == []  # neither went down the middleware stack
    assert logs.current_context() == {}  # the request's context ended with it

    other = await client.get("/other")
    assert other.status_code == 200 and stack == ["/other"]
    assert re.fullmatch(r"[0-9a-f]{32}", other.headers["x-request-id"])


async def test_errors_are_the_apps_problem_documents(client_and_stack: Any) -> None:
    client, _ = client_and_stack
    problem = await client.post("/hooks/f6Org", content=b"problem", headers={"X-Request-ID": "p"})
    assert problem.status_code == 409
    assert problem.headers["content-type"] == "application/problem+json"
    assert problem.json()["code"] == "conflicted"
    assert problem.json()["instance"] == "/hooks/f6Org"
    assert problem.headers["x-request-id"] == "p"

    crash = await client.post("/hooks/f6Org", content=b"crash")
    assert crash.status_code == 500
    assert crash.json()["code"] == "internal_error"
    assert "x-request-id" in crash.headers


async def test_header_floods_are_refused_in_the_lane_too(client_and_stack: Any) -> None:
    client, stack = client_and_stack
    headers = [(f"x-flood-{i}", "1") for i in range(MAX_HEADER_COUNT + 1)]
    response = await client.post("/hooks/f6Org", content=b"hello", headers=headers)
    assert response.status_code == 431
    assert response.json()["code"] == "headers_too_large"
    assert response.headers["connection"] == "close"
    assert stack == []


async def test_other_methods_and_paths_go_down_the_stack(client_and_stack: Any) -> None:
    client, stack = client_and_stack
    wrong_method = await client.get("/hooks/f6Org")
    assert wrong_method.status_code == 405
    assert "POST" in wrong_method.headers["allow"]
    nested = await client.post("/hooks/f6Org/more", content=b"x")
    assert nested.status_code == 404
    assert stack == ["/hooks/f6Org", "/hooks/f6Org/more"]


def test_only_string_path_parameters_are_taken() -> None:
    router = APIRouter(route_class=RawRequestRoute)

    @router.post("/hooks/{number:int}")
    async def hook(request: Request, number: int) -> JSONResponse:
        return JSONResponse({})

    with pytest.raises(ValueError, match="string parameters only"):
        lane_routes(router.routes)
