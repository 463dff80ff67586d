"""Startup over HTTPS, the control API over HTTP, and the `calbridge sandbox` command."""

from __future__ import annotations

import os
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import pytest

from app.sandbox import SandboxServer, is_loopback


async def test_serves_https_with_its_own_ca(sandbox: SandboxServer) -> None:
    assert sandbox.url.startswith("https://127.0.0.1:")
    assert sandbox.graph_url == sandbox.url + "/v1.0"
    context = ssl.create_default_context(cafile=str(sandbox.ca_path))
    async with httpx.AsyncClient(verify=context) as client:
        response = await client.get(sandbox.url + "/_sandbox/clock")
    assert response.status_code == 200
    async with httpx.AsyncClient() as untrusting:  # the system store does not know the CA
        try:
            await untrusting.get(sandbox.url + "/_sandbox/clock")
        except httpx.ConnectError as exc:
            assert "CERTIFICATE_VERIFY_FAILED" in str(exc)
        else:
            raise AssertionError("an unknown CA must not be trusted")


def test_blocking_context_manager() -> None:
    with SandboxServer() as server:
        context = ssl.create_default_context(cafile=str(server.ca_path))
        with httpx.Client(verify=context) as client:
            assert client.get(server.url + "/_sandbox/stats").json()["token_requests"] == 0
    assert not server.ca_path.exists()  # its temporary state dir is gone


async def test_control_api_over_http(http: httpx.AsyncClient) -> None:
    tenant = (await http.post("/_sandbox/tenants", json={"domains": ["fabrikam.example"]})).json()
    app = (await http.post(f"/_sandbox/tenants/{tenant['tenant_id']}/apps", json={})).json()
    user = (
        await http.post(
            f"/_sandbox/tenants/{tenant['tenant_id']}/users",
            json={"user_principal_name": "anna@fabrikam.example"},
        )
    ).json()
    form = {
        "grant_type": "client_credentials",
        "client_id": app["client_id"],
        "client_secret": app["client_secret"],
        "scope": "https://graph.microsoft.com/.default",
    }
    token = (await http.post("/fabrikam.example/oauth2/v2.0/token", data=form)).json()
    auth = {"Authorization": f"Bearer {token['access_token']}"}
    created = await http.post(
        "/v1.0/users/anna@fabrikam.example/events",
        json={"subject": "From HTTP"},
        headers=auth,
    )
    assert created.status_code == 201
    listed = (await http.get("/_sandbox/mailboxes/anna@fabrikam.example/events")).json()
    assert [e["subject"] for e in listed] == ["From HTTP"]
    event_id = listed[0]["id"]
    edited = await http.patch(
        f"/_sandbox/mailboxes/{user['id']}/events/{event_id}", json={"subject": "Edited"}
    )
    assert edited.json()["changeKey"] != created.json()["changeKey"]
    moved = await http.post(f"/_sandbox/mailboxes/{user['id']}/events/{event_id}/move")
    assert moved.json()["restId"] != created.json()["id"]
    stale = await http.get(f"/v1.0/users/{user['id']}/events/{created.json()['id']}", headers=auth)
    assert stale.status_code == 404  # the REST id changed with the move
    assert (
        await http.delete(f"/_sandbox/mailboxes/{user['id']}/events/{event_id}")
    ).status_code == 204
    assert (await http.get(f"/_sandbox/mailboxes/{user['id']}/events")).json() == []

    await http.post("/_sandbox/faults", json={"kind": "503", "count": 1, "path": "/v1.0/"})
    assert len((await http.get("/_sandbox/faults")).json()) == 1
    failed = await http.get(f"/v1.0/users/{user['id']}/events", headers=auth)
    assert failed.status_code == 503
    assert (await http.get("/_sandbox/faults")).json() == []
    before = (await http.get("/_sandbox/clock")).json()["now"]
    after = (await http.post("/_sandbox/clock/advance", json={"seconds": 3600})).json()["now"]
    assert after > before
    assert (await http.get("/_sandbox/stats")).json()["token_requests"] == 1
    expired = await http.get(f"/v1.0/users/{user['id']}/events", headers=auth)
    assert expired.status_code == 401


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_prints_what_a_user_needs(tmp_path: object) -> None:
    port = _free_port()
    command = [sys.executable, "-m", "app.cli", "sandbox", "--port", str(port)]
    command += ["--state-dir", str(tmp_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    ) as process:
        assert process.stdout is not None
        lines = [process.stdout.readline() for _ in range(15)]
        process.terminate()
        process.wait(timeout=10)
    text = "".join(lines)
    url = f"https://127.0.0.1:{port}"
    assert f"running at {url}" in text
    assert f"export CALBRIDGE_GRAPH_URL={url}/v1.0" in text
    assert f"export CALBRIDGE_AUTHORITY_HOST={url}" in text
    assert f"export CALBRIDGE_CA_BUNDLE={tmp_path}/sandbox-ca.pem" in text
    for needle in (
        "tenant id:",
        "client id:",
        "client secret:",
        "max@contoso.example",
        "erika@contoso.example",
    ):
        assert needle in text
    assert process.returncode == 0


def test_cli_stops_cleanly_on_sigterm_right_after_it_starts(tmp_path: object) -> None:
    """SIGTERM as soon as it prints its first line, before it waits for requests: exit 0,
    never a traceback or 130 (the handler only asks the server to stop)."""
    command = [sys.executable, "-m", "app.cli", "sandbox", "--port", str(_free_port())]
    command += ["--state-dir", str(tmp_path)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    ) as process:
        assert process.stdout is not None
        assert "running at" in process.stdout.readline()
        process.send_signal(signal.SIGTERM)
        _, errors = process.communicate(timeout=20)
    assert process.returncode == 0, errors
    assert "Traceback" not in errors


def test_only_loopback_unless_remote_is_allowed(tmp_path: Path) -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost", "LOCALHOST"):
        assert is_loopback(host), host
    for host in ("0.0.0.0", "::", "192.0.2.1", "example.com", ""):
        assert not is_loopback(host), host
    with pytest.raises(ValueError, match=r"0\.0\.0\.0 is not a loopback address"):
        SandboxServer(host="0.0.0.0", state_dir=tmp_path)
    SandboxServer(host="0.0.0.0", state_dir=tmp_path, allow_remote=True)  # allowed explicitly


def test_a_failed_start_leaves_no_temp_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        server = SandboxServer(port=busy.getsockname()[1])
        assert server.state_dir.parent == tmp_path
        with pytest.raises(OSError):
            server.start_blocking()
    assert list(tmp_path.iterdir()) == []
