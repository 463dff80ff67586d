"""`/docs` and `/redoc` work offline: every script and style they load is served by calbridge
itself, none comes from a CDN."""

from __future__ import annotations

import re

import httpx
import pytest

_ASSET = re.compile(r"""(?:src|href)=["']([^"']+)["']|url:\s*["']([^"']+)["']""")


@pytest.mark.parametrize(("page", "script"), [("/docs", "swagger-ui"), ("/redoc", "redoc")])
async def test_the_documentation_pages_load_nothing_from_elsewhere(
    client: httpx.AsyncClient, page: str, script: str
) -> None:
    response = await client.get(page)
    assert response.status_code == 200
    assets = [a or b for a, b in _ASSET.findall(response.text)]
    assert assets, response.text
    assert [a for a in assets if "://" in a or a.startswith("//")] == []
    scripts = [a for a in assets if a.endswith(".js")]
    assert any(script in a for a in scripts), scripts
    for asset in assets:
        if asset.startswith("/") and not asset.endswith(".json"):
            served = await client.get(asset)
            assert served.status_code == 200, asset
            assert len(served.content) > 1000, asset


@pytest.mark.parametrize("path", ["/webhooks/graph/notifications", "/webhooks/graph/lifecycle"])
async def test_the_validation_token_is_documented_as_the_server_checks_it(
    client: httpx.AsyncClient, path: str
) -> None:
    document = (await client.get("/openapi.json")).json()
    [parameter] = [
        p for p in document["paths"][path]["post"]["parameters"] if p["name"] == "validationToken"
    ]
    schema = parameter["schema"]
    for length, documented_ok in [
        (0, schema["minLength"] <= 0),
        (1, schema["minLength"] <= 1),
        (schema["maxLength"], True),
        (schema["maxLength"] + 1, False),
    ]:
        response = await client.post(path, params={"validationToken": "v" * length})
        assert (response.status_code == 200) is documented_ok, (length, response.status_code)
        if not documented_ok:
            assert response.json()["code"] == "invalid_validation_token"
