"""Verify's `bookingtime` check against the bookingtime emulator over HTTPS: a token for the
organisation, and the state and error it leaves on the connection, told in German and English."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from app.crypto import SecretBox
from app.db import Database
from app.main import create_app
from app.sandbox import SandboxServer
from tests.conftest import ADMIN_TOKEN, sandbox_settings
from tests.servers import free_port

HEADERS = {"Authorization": f"Bearer {ADMIN_TOKEN}"}

ENGLISH_REFUSED = (
    "bookingtime refused the app's credentials (client ID {client_id}). Check the bookingtime "
    "app's client ID and client secret in the connection."
)
GERMAN_REFUSED = (
    "bookingtime hat die Zugangsdaten der App (Client-ID {client_id}) abgelehnt. Bitte Client-ID "
    "und Client-Secret der bookingtime-App in der Verbindung prüfen."
)
GERMAN_NOT_PERMITTED = (
    "Die bookingtime-App {client_id} ist für diese Organisation nicht freigegeben. Bitte die App "
    "in bookingtime für die Organisation freigeben."
)
ENGLISH_NOT_PERMITTED = (
    "The bookingtime app {client_id} is not permitted for this organisation. Permit the app for "
    "the organisation in bookingtime."
)


@dataclass
class Setup:
    sandbox: SandboxServer
    db_url: str
    database: Database
    secret_box: SecretBox
    org: str
    client_id: str
    secret: str
    graph: dict[str, str]

    @property
    def url(self) -> str:
        return f"/api/v1/connections/{self.org}"

    @asynccontextmanager
    async def calbridge(self, *, auth_url: str | None = None) -> AsyncIterator[httpx.AsyncClient]:
        """calbridge in-process, its bookingtime client pointed at the emulator (or `auth_url`)."""
        settings = sandbox_settings(
            self.db_url,
            self.sandbox,
            bookingtime={
                "api_url": f"{self.sandbox.url}/bookingtime/app/v3/",
                "auth_url": auth_url or f"{self.sandbox.url}/bookingtime/oauth/token",
                "timeout_seconds": 5,
            },
        )
        app = create_app(settings, database=self.database, secret_box=self.secret_box)
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(
                transport=transport, base_url="http://calbridge.test", headers=HEADERS
            ) as http:
                yield http

    async def connect(self, http: httpx.AsyncClient, **bookingtime: Any) -> None:
        body = {
            **self.graph,
            "locale": "de",
            "bookingtime_api": {
                "client_id": self.client_id,
                "client_secret": self.secret,
                **bookingtime,
            },
        }
        response = await http.put(self.url, json=body)
        assert response.status_code in (200, 201), response.text

    async def verify(self, http: httpx.AsyncClient, **headers: str) -> dict[str, Any]:
        response = await http.post(f"{self.url}/verify", headers=headers)
        assert response.status_code == 200, response.text
        result: dict[str, Any] = response.json()
        return result

    async def bookingtime_api(self, http: httpx.AsyncClient, **headers: str) -> dict[str, Any]:
        response = await http.get(self.url, headers=headers)
        assert response.status_code == 200, response.text
        shown: dict[str, Any] = response.json()["bookingtime_api"]
        return shown


@pytest.fixture
async def setup(db_url: str, database: Database, secret_box: SecretBox) -> AsyncIterator[Setup]:
    async with SandboxServer.start(seed=7) as sandbox:
        control = sandbox.control
        tenant = control.add_tenant("contoso.example")
        registration, graph_secret = control.add_app(tenant.id)
        bookingtime = control.bookingtime
        client_id, secret = bookingtime.add_app()
        org = bookingtime.add_organization(name="Praxis Nord")
        bookingtime.permit(client_id, org)
        graph = {
            "tenant": tenant.id,
            "client_id": registration.client_id,
            "client_secret": graph_secret,
        }
        yield Setup(sandbox, db_url, database, secret_box, org, client_id, secret, graph)


def _checks(result: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    return [(c["name"], c["ok"], c["code"]) for c in result["checks"]]


async def test_good_credentials(setup: Setup) -> None:
    async with setup.calbridge() as http:
        await setup.connect(http)
        assert (await setup.bookingtime_api(http))["state"] == "unchecked"
        result = await setup.verify(http, **{"Accept-Language": "en"})
        assert result["ok"] is True
        assert _checks(result) == [
            ("token", True, "token_acquired"),
            ("bookingtime", True, "bookingtime_token_acquired"),
        ]
        assert result["checks"][1]["message"].startswith("Signed in to bookingtime")
        # The token was asked for this organisation.
        assert setup.sandbox.control.bookingtime.token_requests[("refresh_token", setup.org)] == 1
        shown = await setup.bookingtime_api(http)
        assert shown["state"] == "ok"
        assert shown["checked_at"] is not None
        assert shown["last_error_code"] is None and shown["last_error_message"] is None

        # New credentials: what was found with the old ones no longer holds.
        await setup.connect(http, client_secret="another-secret-0123456789")
        assert (await setup.bookingtime_api(http))["state"] == "unchecked"


async def test_wrong_secret_is_rejected(setup: Setup) -> None:
    async with setup.calbridge() as http:
        await setup.connect(http, client_secret="not-the-secret-0123456789")
        result = await setup.verify(http)
        assert result["ok"] is False
        assert _checks(result)[-1] == ("bookingtime", False, "bookingtime_credentials_refused")
        assert result["checks"][-1]["message"] == GERMAN_REFUSED.format(client_id=setup.client_id)

        german = await setup.bookingtime_api(http)
        assert german["state"] == "rejected"
        assert german["last_error_code"] == "bookingtime_credentials_refused"
        assert german["last_error_message"] == GERMAN_REFUSED.format(client_id=setup.client_id)
        english = await setup.bookingtime_api(http, **{"Accept-Language": "en-GB,en;q=0.9"})
        assert english["last_error_message"] == ENGLISH_REFUSED.format(client_id=setup.client_id)
        assert "not-the-secret" not in str(german) + str(english)

        # The right secret and a verify repair it.
        await setup.connect(http)
        await setup.verify(http)
        repaired = await setup.bookingtime_api(http)
        assert (repaired["state"], repaired["last_error_code"]) == ("ok", None)


async def test_organisation_not_permitted_is_rejected(setup: Setup) -> None:
    setup.sandbox.control.bookingtime.permit(setup.client_id, setup.org, allowed=False)
    async with setup.calbridge() as http:
        await setup.connect(http)
        result = await setup.verify(http, **{"Accept-Language": "en"})
        assert _checks(result)[-1] == ("bookingtime", False, "bookingtime_not_permitted")
        assert result["checks"][-1]["message"] == ENGLISH_NOT_PERMITTED.format(
            client_id=setup.client_id
        )
        shown = await setup.bookingtime_api(http, **{"Accept-Language": "de"})
        assert shown["state"] == "rejected"
        assert shown["last_error_message"] == GERMAN_NOT_PERMITTED.format(client_id=setup.client_id)


@pytest.mark.parametrize("kind", ["html500", "503"])
async def test_a_fault_is_unreachable(setup: Setup, kind: str) -> None:
    setup.sandbox.control.faults.add(kind, path="/bookingtime/oauth/token")  # type: ignore[arg-type]
    async with setup.calbridge() as http:
        await setup.connect(http)
        result = await setup.verify(http)
        assert result["ok"] is False
        assert _checks(result)[-1] == ("bookingtime", False, "bookingtime_unavailable")
        assert result["checks"][-1]["message"].startswith("bookingtime ist vorübergehend")
        shown = await setup.bookingtime_api(http, **{"Accept-Language": "en"})
        assert shown["state"] == "unreachable"
        assert shown["last_error_message"].startswith("bookingtime is temporarily unavailable")


async def test_a_closed_port_is_unreachable(setup: Setup) -> None:
    closed = f"https://127.0.0.1:{free_port()}/bookingtime/oauth/token"
    async with setup.calbridge(auth_url=closed) as http:
        await setup.connect(http)
        result = await setup.verify(http)
        assert _checks(result) == [
            ("token", True, "token_acquired"),
            ("bookingtime", False, "bookingtime_unavailable"),
        ]
        shown = await setup.bookingtime_api(http)
        assert (shown["state"], shown["last_error_code"]) == (
            "unreachable",
            "bookingtime_unavailable",
        )
