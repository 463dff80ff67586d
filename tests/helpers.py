"""Assertions and waiting shared by every test: `eventually` (poll until true),
`assert_problem` (an exact problem document) and `invoke_cli` (the command, in this process)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import os
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import httpx

from app.models.base import utcnow
from app.queue.registry import JobContext

T = TypeVar("T")


async def eventually(
    check: Callable[[], Awaitable[T]] | Callable[[], T],
    *,
    within: float = 30.0,
    every: float = 0.02,
    failure: str = "condition not met",
) -> T:
    """Poll `check` (a plain or a coroutine function) until it returns something truthy, and
    return that. Fails after `within` seconds with `failure` and the last result: a hang guard,
    not a timing assertion."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result  # type: ignore[return-value]
        if loop.time() > deadline:
            raise AssertionError(f"{failure} within {within} s (last: {result!r})")
        await asyncio.sleep(every)


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """`response` is an RFC 9457 problem document with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["code"] == code
    return body


def invoke_cli(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """`calbridge args` in this process, with `env`'s CALBRIDGE_* variables and no others, in
    `cwd`: what running it as a process gives, for cases that differ only in what they are given.
    Starting a process costs far more than the check it runs; each behaviour keeps a real one."""
    from typer.testing import CliRunner

    from app.cli import cli
    from app.config import get_settings

    variables: dict[str, str | None] = {k: None for k in os.environ if k.startswith("CALBRIDGE_")}
    variables.update((k, v) for k, v in env.items() if k.startswith("CALBRIDGE_"))
    get_settings.cache_clear()  # a process reads its settings once: here, once per command
    try:
        with contextlib.chdir(cwd):
            result = CliRunner().invoke(cli, args, env=variables)
    finally:
        get_settings.cache_clear()
    # An exception escaping the command would have been a traceback on a real process's stderr.
    traceback = "" if isinstance(result.exception, SystemExit | None) else "Traceback"
    return subprocess.CompletedProcess(
        ["calbridge", *args], result.exit_code, result.stdout, result.stderr + traceback
    )


def job_context(
    world: Any, kind: str, args: dict[str, Any], *, job_id: int = 1, max_attempts: int = 8
) -> JobContext:
    """The context a worker hands a handler: the first attempt of job `job_id` on the world's
    database and settings."""
    return JobContext(
        job_id=job_id,
        kind=kind,
        args=args,
        attempt=1,
        max_attempts=max_attempts,
        mailbox=None,
        serial_key=None,
        dedupe_key=None,
        database=world.database,
        settings=world.settings,
        worker_id="test",
        clock=utcnow,
    )
