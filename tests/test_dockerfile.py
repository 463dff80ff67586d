"""The Dockerfile, checked as far as a machine without Docker can: multi-stage, a non-root
runtime user, `calbridge serve` as the command, and a HEALTHCHECK whose own command is run here
against a real server (healthy) and a closed port (unhealthy)."""

from __future__ import annotations

import asyncio
import json
import re
import sys
from pathlib import Path

from fastapi import FastAPI

from tests.servers import free_port, serve_app

DOCKERFILE = Path(__file__).resolve().parent.parent / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (word.upper(), rest.strip())
        for line in lines
        if line and not line.startswith("#")
        for word, _, rest in [line.partition(" ")]
    ]


def _healthcheck_command(port: int) -> list[str]:
    [argument] = [rest for word, rest in _instructions() if word == "HEALTHCHECK"]
    exec_form = argument[argument.index("CMD") + len("CMD") :].strip()
    command: list[str] = json.loads(exec_form)
    assert command[0] == "python"
    return [sys.executable, *(part.replace(":8000/", f":{port}/") for part in command[1:])]


def test_build_and_runtime_stages_with_a_non_root_user_running_calbridge_serve() -> None:
    instructions = _instructions()
    stages = [rest for word, rest in instructions if word == "FROM"]
    assert len(stages) >= 2, "multi-stage: build and runtime"
    runtime = instructions[max(i for i, (word, _) in enumerate(instructions) if word == "FROM") :]
    users = [rest for word, rest in runtime if word == "USER"]
    assert users and users[-1] not in ("root", "0"), "the runtime stage runs as a non-root user"
    [cmd] = [json.loads(rest) for word, rest in runtime if word == "CMD"]
    assert cmd[:2] == ["calbridge", "serve"] and "0.0.0.0" in cmd
    [health] = [rest for word, rest in runtime if word == "HEALTHCHECK"]
    assert "/healthz" in health


async def _run(command: list[str]) -> int:
    process = await asyncio.create_subprocess_exec(*command)
    return await asyncio.wait_for(process.wait(), timeout=30)


async def test_the_healthcheck_command_tells_a_running_server_from_a_dead_one(
    app: FastAPI,
) -> None:
    async with serve_app(app, lifespan="off") as port:
        assert await _run(_healthcheck_command(port)) == 0
    assert await _run(_healthcheck_command(free_port())) != 0
