"""The control API documents itself at /_sandbox/docs (offline), and only itself: every control
route is in its OpenAPI document with a summary, and none of the emulated Graph or Entra routes."""

from __future__ import annotations

import httpx

from app.sandbox import control_router


async def test_every_control_route_is_documented_and_nothing_else(http: httpx.AsyncClient) -> None:
    document = (await http.get("/_sandbox/openapi.json")).json()
    documented = {
        (path, method.upper()): operation
        for path, operations in document["paths"].items()
        for method, operation in operations.items()
    }
    routes = {
        (route.path, method)
        for route in control_router.router.routes
        for method in getattr(route, "methods", ())
    }
    assert set(documented) == routes
    assert all(path.startswith("/_sandbox/") for path, _ in documented)
    assert all(not operation["summary"].startswith("Http ") for operation in documented.values())
    assert "no authentication" in document["info"]["description"]


async def test_the_docs_page_loads_its_assets_from_the_sandbox(http: httpx.AsyncClient) -> None:
    page = await http.get("/_sandbox/docs")
    assert page.status_code == 200
    assert "/_sandbox/openapi.json" in page.text
    assert "cdn." not in page.text and "https://" not in page.text
    script = await http.get("/_sandbox/static-docs/swagger-ui-bundle.js")
    assert script.status_code == 200 and len(script.content) > 100_000
