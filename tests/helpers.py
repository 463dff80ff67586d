"""Assertions and waiting shared by every test: `eventually` (poll until true) and
`assert_problem` (an exact problem document)."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import httpx

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
