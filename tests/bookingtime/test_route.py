"""`RawRequestRoute`: documented from its declaration, but its endpoint gets the raw request."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from app.problems import ProblemError, install_problem_handlers, problem_responses
from app.routing import RawRequestRoute


class Thing(BaseModel):
    name: str


def build_app() -> FastAPI:
    router = APIRouter(route_class=RawRequestRoute)

    @router.post(
        "/things/{thing_id}",
        status_code=202,
        response_model=Thing,
        responses=problem_responses(418),
        openapi_extra={"requestBody": {"content": {"application/json": {"example": {}}}}},
    )
    async def receive(request: Request, thing_id: int) -> JSONResponse:
        body = await request.body()
        if body == b"teapot":
            raise ProblemError(418, "teapot", "A teapot")
        # No validation happened: the path parameter is the raw string, the body raw bytes.
        return JSONResponse({"thing_id": thing_id, "body": body.decode()}, status_code=202)

    app = FastAPI()
    install_problem_handlers(app)
    app.include_router(router)
    return app


async def test_the_endpoint_gets_the_raw_request() -> None:
    app = build_app()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        response = await c.post("/things/not-a-number", content=b"{not json")
        assert response.status_code == 202
        assert response.json() == {"thing_id": "not-a-number", "body": "{not json"}

        problem = await c.post("/things/1", content=b"teapot")
        assert problem.status_code == 418
        assert problem.headers["content-type"] == "application/problem+json"
        assert problem.json()["code"] == "teapot"


def test_the_route_is_documented_from_its_declaration() -> None:
    operation = build_app().openapi()["paths"]["/things/{thing_id}"]["post"]
    [parameter] = operation["parameters"]
    assert (parameter["name"], parameter["in"], parameter["schema"]["type"]) == (
        "thing_id",
        "path",
        "integer",
    )
    assert set(operation["responses"]) == {"202", "418", "422"}
    assert operation["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Thing"
    }
    assert operation["requestBody"]["content"]["application/json"]["example"] == {}
