"""`calbridge token create/list/revoke` as a real process, and what the API makes of the result."""

from __future__ import annotations

import asyncio
import sqlite3
import subprocess
from contextlib import closing
from pathlib import Path

import httpx

from app.config import Settings
from app.crypto import SecretBox
from app.db import Database
from app.main import create_app
from tests.conftest import SECRET_KEY
from tests.helpers import invoke_cli
from tests.test_cli import _env, _run


async def _in_process(args: list[str], tmp_path: Path) -> subprocess.CompletedProcess[str]:
    # Off the event loop: the commands run their own (asyncio.run). `token list` and `token
    # revoke` below run as real processes too, and test_cli.py's `token create`.
    return await asyncio.to_thread(invoke_cli, args, _env(tmp_path), tmp_path)


async def _create(tmp_path: Path, name: str, *role: str) -> str:
    result = await _in_process(["token", "create", "--name", name, *role], tmp_path)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def _status(db_path: Path, token: str, method: str = "GET") -> int:
    settings = Settings(
        database_url=f"sqlite:///{db_path}",
        secret_key=SECRET_KEY,
        _env_file=None,  # type: ignore[call-arg]
    )
    database = Database(settings.database_url)
    app = create_app(settings, database=database, secret_box=SecretBox([SECRET_KEY.encode()]))
    try:
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                # A list commits (and so records the token's use); a DELETE of nothing would 404.
                path = "/api/v1/connections" if method == "GET" else "/api/v1/connections/f6none"
                response = await client.request(
                    method, path, headers={"Authorization": f"Bearer {token}"}
                )
                return response.status_code
    finally:
        await database.dispose()


async def test_list_shows_roles_never_tokens_and_revoke_takes_effect_at_once(
    tmp_path: Path,
) -> None:
    db_path = tmp_path / "calbridge.db"
    reader = await _create(tmp_path, "dashboard", "--role", "read")
    ops = await _create(tmp_path, "ops")  # admin unless said otherwise
    ci_1 = await _create(tmp_path, "ci", "--role", "admin")
    ci_2 = await _create(tmp_path, "ci")
    with closing(sqlite3.connect(db_path)) as conn:
        roles = dict(conn.execute("SELECT name, role FROM admin_token WHERE name != 'ci'"))
    assert roles == {"dashboard": "read", "ops": "admin"}
    assert await _status(db_path, ops) == 200
    assert await _status(db_path, reader) == 200
    assert await _status(db_path, reader, "DELETE") == 403

    listed = _run(["token", "list"], _env(tmp_path), tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.strip().splitlines()
    assert lines[0].split() == ["ID", "NAME", "ROLE", "CREATED", "LAST", "USED", "REVOKED"]
    assert [line.split()[1:3] for line in lines[1:]] == [
        ["dashboard", "read"],
        ["ops", "admin"],
        ["ci", "admin"],
        ["ci", "admin"],
    ]
    # `ops` was used just now; `ci` never.
    assert lines[2].split()[4].startswith("20")
    assert lines[3].split()[4] == "-"
    assert all(line.split()[5] == "-" for line in lines[1:])  # none revoked
    for token in (reader, ops, ci_1, ci_2):
        assert token not in listed.stdout
        assert token.removeprefix("cbt_")[:12] not in listed.stdout

    # By name: every live token of that name.
    revoked = _run(["token", "revoke", "ci"], _env(tmp_path), tmp_path)
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.count("revoked token") == 2
    assert await _status(db_path, ci_1) == 401
    assert await _status(db_path, ci_2) == 401
    # By id.
    ops_id = lines[2].split()[0]
    assert (await _in_process(["token", "revoke", ops_id], tmp_path)).returncode == 0
    assert await _status(db_path, ops) == 401
    assert await _status(db_path, reader) == 200

    after = (await _in_process(["token", "list"], tmp_path)).stdout
    assert [line.split()[1] for line in after.strip().splitlines()[1:]] == ["dashboard"]
    everything = (await _in_process(["token", "list", "--all"], tmp_path)).stdout
    assert len(everything.strip().splitlines()) == 5

    missing = await _in_process(["token", "revoke", "nobody"], tmp_path)
    assert missing.returncode != 0
    assert "nobody" in missing.stderr


def test_create_refuses_an_unknown_role(tmp_path: Path) -> None:
    result = _run(["token", "create", "--name", "x", "--role", "root"], _env(tmp_path), tmp_path)
    assert result.returncode != 0
    assert "root" in result.stderr
    assert "read" in result.stderr and "admin" in result.stderr
    assert not (tmp_path / "calbridge.db").exists()  # refused before touching the database
