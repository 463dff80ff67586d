"""The world the subscription and notification tests share (see subs_helpers)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from tests.notifications.subs_helpers import World, subs_world
from tests.world import MakeWorld


@pytest.fixture
async def world(make_world: MakeWorld) -> AsyncIterator[World]:
    async with subs_world(make_world) as built:
        yield built
