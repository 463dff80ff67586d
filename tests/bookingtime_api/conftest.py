"""A running sandbox per test (real HTTPS, real uvicorn) with the bookingtime emulator: an app
permitted for two organisations with booking resources, and a BookingtimeClient on calbridge's
own shared httpx client (trusting the sandbox's CA through CALBRIDGE_CA_BUNDLE)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import httpx
import pytest
from pydantic import SecretStr

from app.bookingtime_api import AppCredentials, BookingtimeClient, build_http_client
from app.config import Settings
from app.sandbox import SandboxServer

BERLIN = "Europe/Berlin"


@dataclass
class Setup:
    sandbox: SandboxServer
    client_id: str
    secret: str
    org: str
    other_org: str
    max_id: str
    erika_id: str
    other_max_id: str

    @property
    def control(self) -> Any:
        return self.sandbox.control.bookingtime

    @property
    def token_requests(self) -> dict[tuple[str, str | None], int]:
        return dict(self.control.token_requests)

    def now(self) -> datetime:
        return self.sandbox.control.clock.now()


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer.start(seed=7) as server:
        yield server


@pytest.fixture
def setup(sandbox: SandboxServer) -> Setup:
    control = sandbox.control.bookingtime
    client_id, secret = control.add_app()
    org = control.add_organization(time_zone=BERLIN, name="Praxis Nord")
    other_org = control.add_organization(time_zone=BERLIN, name="Praxis Süd")
    for organization in (org, other_org):
        control.permit(client_id, organization)
    max_id = control.add_booking_resource(org, name="Max Mustermann", custom_id="max")
    erika_id = control.add_booking_resource(org, name="Erika Mustermann", custom_id="erika")
    other_max_id = control.add_booking_resource(other_org, name="Max Süd", custom_id="max")
    return Setup(sandbox, client_id, secret, org, other_org, max_id, erika_id, other_max_id)


@pytest.fixture
def settings(sandbox: SandboxServer) -> Settings:
    return Settings(  # type: ignore[call-arg]
        _env_file=None,
        ca_bundle=sandbox.ca_path,
        bookingtime={
            "api_url": f"{sandbox.url}/bookingtime/app/v3/",
            "auth_url": f"{sandbox.url}/bookingtime/oauth/token",
            "timeout_seconds": 5,
        },
    )


@pytest.fixture
async def http(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with build_http_client(settings) as client:
        yield client


MakeClient = Callable[..., BookingtimeClient]


@pytest.fixture
def make_client(http: httpx.AsyncClient, setup: Setup, settings: Settings) -> MakeClient:
    """A client on the shared httpx client, on the sandbox's clock unless told otherwise."""

    def make(
        *, secret: str | None = None, clock: Callable[[], datetime] | None = None
    ) -> BookingtimeClient:
        credentials = AppCredentials(setup.client_id, SecretStr(secret or setup.secret))
        return BookingtimeClient.from_settings(
            http, credentials, settings.bookingtime, clock=clock or setup.now
        )

    return make


@pytest.fixture
def client(make_client: MakeClient) -> BookingtimeClient:
    return make_client()
