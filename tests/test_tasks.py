"""Every job kind of the app's registry: an exception nobody foresaw lands in the connection's
sync history and fails the job for good; expected errors pass through to the retry decision."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.exc import OperationalError

from app.bookingtime_api.errors import Transient as BookingtimeTransient
from app.models import SyncRecord
from app.queue.errors import PermanentError, RetryLater
from app.queue.registry import JobContext, JobRegistry
from app.queue.retry import RetryStrategy
from app.tasks import build_registry
from tests.helpers import job_context
from tests.world import GraphWorld, MakeWorld


async def _records(world: GraphWorld) -> list[SyncRecord]:
    async with world.database.session() as session:
        return list(await session.scalars(select(SyncRecord)))


def _registry(world: GraphWorld, error: BaseException) -> JobRegistry:
    registry = build_registry(world.settings, graph=world.graph, secret_box=world.secret_box)

    async def broken(_ctx: JobContext) -> None:
        raise error

    registry.register("test.broken", broken)
    return registry


@pytest.mark.parametrize("locale", ["de", "en"])
async def test_an_unexpected_error_in_any_job_is_recorded_and_not_retried(
    make_world: MakeWorld, locale: str
) -> None:
    async with make_world(GraphWorld) as world:
        await world.add_connection("f6Tasks", locale=locale)
        registry = _registry(world, KeyError("a bug calbridge did not foresee"))
        kind = registry.get("test.broken")
        assert kind is not None
        args = {"connection_id": world.connection_id, "mailbox": "max@contoso.example"}
        with pytest.raises(PermanentError) as raised:
            await kind.handler(job_context(world, "test.broken", args, job_id=7, max_attempts=5))

        assert isinstance(raised.value.__cause__, KeyError)
        decision = RetryStrategy().decide(
            raised.value, attempt=1, max_attempts=5, now=datetime.now(UTC)
        )
        assert decision.outcome == "failed"
        [record] = await _records(world)
        assert (record.code, record.status, record.action, record.job_id, record.mailbox) == (
            "job_internal_error",
            "error",
            "job",
            7,
            "max@contoso.example",
        )
        opening = {
            "de": "Der Hintergrundauftrag test.broken ist wegen eines unerwarteten Fehlers",
            "en": "The background job test.broken failed because of an unexpected error",
        }
        assert record.message.startswith(opening[locale])
        assert "KeyError: 'a bug calbridge did not foresee'" in record.message
        assert str(raised.value) == record.message


async def test_a_job_without_a_connection_fails_for_good_without_a_record(
    make_world: MakeWorld,
) -> None:
    async with make_world(GraphWorld) as world:
        kind = _registry(world, ValueError("no connection here")).get("test.broken")
        assert kind is not None
        with pytest.raises(PermanentError, match="ValueError: no connection here"):
            await kind.handler(job_context(world, "test.broken", {}))
        assert await _records(world) == []


@pytest.mark.parametrize(
    "error",
    [
        OperationalError("SELECT 1", {}, Exception("database is locked")),
        BookingtimeTransient("bookingtime answered 503"),
        RetryLater("not yet"),
    ],
    ids=["outage", "bookingtime", "queue"],
)
async def test_expected_errors_pass_through_to_the_retry_decision(
    make_world: MakeWorld, error: Exception
) -> None:
    async with make_world(GraphWorld) as world:
        await world.add_connection("f6Tasks")
        kind = _registry(world, error).get("test.broken")
        assert kind is not None
        with pytest.raises(type(error)):
            await kind.handler(job_context(world, "test.broken", {"connection_id": 1}))
        assert await _records(world) == []
