"""The bookingtime control API over HTTP (as the demo or a benchmark in another process uses it),
its place in the control API's document, and the ready-made setup `calbridge sandbox` prints."""

from __future__ import annotations

import ssl
from typing import Any

import httpx

from app.sandbox import SandboxServer
from tests.sandbox.bookingtime.conftest import TOKEN

CONTROL = "/_sandbox/bookingtime"


async def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    return response.json() if response.content else None


async def test_a_whole_life_over_http(http: httpx.AsyncClient, sandbox: SandboxServer) -> None:
    app = await _ok(await http.post(f"{CONTROL}/apps", json={}), 201)
    org = (await _ok(await http.post(f"{CONTROL}/organizations", json={"name": "Praxis"}), 201))[
        "organization_id"
    ]
    permit = f"{CONTROL}/apps/{app['client_id']}/organizations/{org}"
    assert (await _ok(await http.put(permit, json={})))["allowed"] is True
    base = f"{CONTROL}/organizations/{org}"
    max_br = (await _ok(await http.post(f"{base}/booking-resources", json={"name": "Max M"}), 201))[
        "id"
    ]
    erika_br = (
        await _ok(await http.post(f"{base}/booking-resources", json={"name": "Erika M"}), 201)
    )["id"]
    employee = {"first_name": "Max", "last_name": "M", "email": "max@contoso.example"}
    await _ok(await http.post(f"{base}/employees", json=employee), 201)
    sync = {"booking_resource_id": max_br, "email": "max@contoso.example"}
    await _ok(await http.post(f"{base}/synchronizations", json=sync), 201)

    booking = {
        "start": "2026-12-08T09:00:00+01:00",
        "end": "2026-12-08T10:00:00+01:00",
        "booking_resource_ids": [max_br],
        "customer": {"firstName": "Eva"},
        "custom_id": "b-1",
    }
    appointment_id = (await _ok(await http.post(f"{base}/appointments", json=booking), 201))["id"]
    one = f"{base}/appointments/{appointment_id}"
    assert (await _ok(await http.get(one)))["start"] == "2026-12-08T09:00:00+01:00"
    edited = await _ok(await http.patch(one, json={"notes": "neu", "name": "Kontrolle"}))
    assert (edited["notes"], edited["name"]) == ("neu", "Kontrolle")
    unknown_field = await http.patch(one, json={"start": "2026-12-08T09:00:00+01:00"})
    assert unknown_field.status_code == 422
    moved = {"start": "2026-12-09T09:00:00+01:00", "end": "2026-12-09T10:30:00+01:00"}
    shown = await _ok(await http.post(f"{one}/move", json=moved))
    assert shown["moved"] is True and shown["duration"] == 90
    reassigned = await _ok(
        await http.put(f"{one}/booking-resources", json={"booking_resource_ids": [erika_br]})
    )
    assert [r["id"] for r in reassigned["bookingResourceList"]] == [erika_br]
    assert (await _ok(await http.post(f"{one}/cancel")))["canceled"] is True
    await _ok(await http.delete(one), 204)
    assert (await http.get(one)).status_code == 404
    unknown_resource = {**booking, "booking_resource_ids": ["brX"]}
    assert (await http.post(f"{base}/appointments", json=unknown_resource)).status_code == 400
    naive = {**booking, "start": "2026-12-08T09:00:00"}
    assert (await http.post(f"{base}/appointments", json=naive)).status_code == 422
    nowhere = f"{CONTROL}/organizations/f6nope/appointments"
    assert (await http.post(nowhere, json=booking)).status_code == 404
    assert await _ok(await http.get(f"{base}/exceptions")) == []

    # The app just made can use what was set up: the token flow counts per organisation.
    token = await http.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_id": app["client_id"],
            "client_secret": app["client_secret"],
        },
    )
    assert token.status_code == 200
    stats = await _ok(await http.get(f"{CONTROL}/stats"))
    assert stats["token_requests"] == [
        {"grant_type": "client_credentials", "organization_id": None, "count": 1}
    ]
    assert sandbox.control.bookingtime.token_requests[("client_credentials", None)] == 1


async def test_switches_and_token_lifetimes_over_http(
    http: httpx.AsyncClient, sandbox: SandboxServer
) -> None:
    assert await _ok(await http.get(f"{CONTROL}/switches")) == {
        "list_canceled": True,
        "timestamp_edit": False,
        "exception_types": ["FREE"],
        "list_limit": 9999,
    }
    changed = await _ok(
        await http.put(
            f"{CONTROL}/switches",
            json={"list_canceled": False, "exception_types": ["FREE", "BLOCKED"], "list_limit": 10},
        )
    )
    assert changed == {
        "list_canceled": False,
        "timestamp_edit": False,
        "exception_types": ["BLOCKED", "FREE"],
        "list_limit": 10,
    }
    switches = sandbox.control.bookingtime.switches
    assert switches.list_canceled is False
    assert switches.exception_types == frozenset({"FREE", "BLOCKED"})
    assert switches.list_limit == 10
    negative = await http.put(f"{CONTROL}/switches", json={"list_limit": -1})
    assert negative.status_code == 422 and switches.list_limit == 10
    await _ok(await http.put(f"{CONTROL}/token-lifetimes", json={"access_seconds": 30}))
    client_id, secret = sandbox.control.bookingtime.add_app()
    refresh = await http.post(
        TOKEN,
        data={"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret},
    )
    access = await http.post(
        TOKEN,
        data={
            "grant_type": "refresh_token",
            "client_id": client_id,
            "refresh_token": refresh.json()["refresh_token"],
        },
    )
    assert access.json()["expires_in"] == 30


async def test_control_routes_are_in_the_control_document(http: httpx.AsyncClient) -> None:
    document = (await http.get("/_sandbox/openapi.json")).json()
    ours = {path for path in document["paths"] if path.startswith(f"{CONTROL}/")}
    assert f"{CONTROL}/organizations/{{organization_id}}/appointments" in ours
    assert not any(path.startswith("/bookingtime") for path in document["paths"])


async def test_ready_made_setup_works_and_prints_its_lines(sandbox: SandboxServer) -> None:
    demo = sandbox.control.seed_demo()
    again = sandbox.control.seed_demo()
    assert again == demo  # stable, and seeding twice changes nothing
    setup = demo.bookingtime
    assert len(setup.booking_resources) == 2
    lines = "\n".join(setup.lines(sandbox.url))
    for value in (
        sandbox.bookingtime_auth_url,
        sandbox.bookingtime_api_url,
        setup.client_id,
        setup.client_secret,
        setup.organization_id,
        *(rid for rid, _ in setup.booking_resources),
    ):
        assert value in lines
    assert sandbox.bookingtime_auth_url == f"{sandbox.url}/bookingtime/oauth/token"
    assert sandbox.bookingtime_api_url == f"{sandbox.url}/bookingtime/app/v3/"

    context = ssl.create_default_context(cafile=str(sandbox.ca_path))
    async with httpx.AsyncClient(verify=context, timeout=10) as client:
        refresh = await client.post(
            sandbox.bookingtime_auth_url,
            data={
                "grant_type": "client_credentials",
                "client_id": setup.client_id,
                "client_secret": setup.client_secret,
            },
        )
        access = await client.post(
            sandbox.bookingtime_auth_url,
            data={
                "grant_type": "refresh_token",
                "client_id": setup.client_id,
                "refresh_token": refresh.json()["refresh_token"],
                "organization_id": setup.organization_id,
            },
        )
        listed = await client.get(
            f"{sandbox.bookingtime_api_url}de/organization/{setup.organization_id}/employee/list",
            headers={"Authorization": f"Bearer {access.json()['access_token']}"},
        )
    assert listed.status_code == 200
    emails = sorted(record["email"] for record in listed.json()["content"]["recordList"])
    assert emails == sorted(demo.mailboxes)  # the Graph demo's mailboxes
