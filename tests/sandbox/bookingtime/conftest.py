"""An organisation in Europe/Berlin with two booking resources, an app permitted for it (and a
second organisation it is not permitted for), and helpers for tokens and App API paths."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.sandbox import SandboxServer
from app.sandbox.bookingtime.control import BookingtimeControl

TOKEN = "/bookingtime/oauth/token"


@dataclass
class World:
    sandbox: SandboxServer
    control: BookingtimeControl
    client_id: str
    secret: str
    org: str
    other_org: str
    max_br: str
    erika_br: str

    def api(self, path: str, *, org: str | None = None, locale: str = "de") -> str:
        return f"/bookingtime/app/v3/{locale}/organization/{org or self.org}/{path}"


@pytest.fixture
def world(sandbox: SandboxServer) -> World:
    control = sandbox.control.bookingtime
    client_id, secret = control.add_app()
    org = control.add_organization(time_zone="Europe/Berlin", name="Praxis Nord")
    other = control.add_organization(time_zone="Europe/Berlin", name="Praxis Süd")
    control.permit(client_id, org)
    max_br = control.add_booking_resource(org, name="Max Mustermann", custom_id="MA1")
    erika_br = control.add_booking_resource(org, name="Erika Mustermann", custom_id="MA2")
    return World(sandbox, control, client_id, secret, org, other, max_br, erika_br)


async def refresh_token(http: httpx.AsyncClient, world: World) -> str:
    response = await http.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_id": world.client_id,
            "client_secret": world.secret,
        },
    )
    assert response.status_code == 200, response.text
    return str(response.json()["refresh_token"])


async def access_token(
    http: httpx.AsyncClient, world: World, organization_id: str | None = None
) -> str:
    form = {
        "grant_type": "refresh_token",
        "client_id": world.client_id,
        "refresh_token": await refresh_token(http, world),
    }
    if organization_id is not None:
        form["organization_id"] = organization_id
    response = await http.post(TOKEN, data=form)
    assert response.status_code == 200, response.text
    return str(response.json()["access_token"])


@pytest.fixture
async def api(http: httpx.AsyncClient, world: World) -> httpx.AsyncClient:
    """The sandbox client with an access token for `world.org`."""
    http.headers["Authorization"] = f"Bearer {await access_token(http, world, world.org)}"
    return http


def assert_failure(response: httpx.Response, status: int, parameter: str | None = None) -> str:
    """The failure envelope with one message; returns its text."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body: dict[str, Any] = response.json()
    assert body["content"] == []
    [message] = body["messageList"]
    assert set(message) == {"class", "type", "parameter", "text"}
    assert message["class"] == "MESSAGE" and message["type"] == "failure"
    assert message["parameter"] == parameter
    assert isinstance(message["text"], str) and message["text"]
    return str(message["text"])
