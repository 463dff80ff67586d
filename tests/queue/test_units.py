"""The retry strategy, the registry and the handler exceptions (no database)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.config import WorkerSettings
from app.queue.errors import JobError, PermanentError, RetryAfter
from app.queue.registry import JobContext, JobRegistry
from app.queue.repository import error_text, next_tick
from app.queue.retry import Decision, RetryStrategy

NOW = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)


def test_backoff_doubles_and_is_capped() -> None:
    strategy = RetryStrategy(base_seconds=2, max_seconds=60)
    assert [strategy.bounds(n) for n in (1, 2, 3, 5)] == [(1, 2), (2, 4), (4, 8), (16, 32)]
    assert strategy.bounds(6) == (30, 60)  # 64 capped
    assert strategy.bounds(10_000) == (30, 60)  # no overflow


@pytest.mark.parametrize(("draw", "expected"), [(0.0, 4.0), (0.5, 6.0), (0.999999, 7.999998)])
def test_backoff_jitter_spans_the_upper_half(draw: float, expected: float) -> None:
    strategy = RetryStrategy(base_seconds=2, max_seconds=60, random=lambda: draw)
    assert strategy.delay(3) == pytest.approx(expected)
    assert strategy.next_run_at(3, NOW) == NOW + timedelta(seconds=strategy.delay(3))


def test_backoff_from_settings_and_real_jitter_within_bounds() -> None:
    strategy = RetryStrategy.from_settings(
        WorkerSettings(backoff_base_seconds=3, backoff_max_seconds=100)
    )
    for attempt in range(1, 12):
        low, high = strategy.bounds(attempt)
        assert all(low <= strategy.delay(attempt) <= high for _ in range(50))
    assert len({strategy.delay(4) for _ in range(20)}) > 1  # jittered


def test_retry_after_seconds_or_absolute_time() -> None:
    strategy = RetryStrategy()
    retry = strategy.decide(RetryAfter(30), attempt=1, max_attempts=3, now=NOW)
    assert retry == Decision("retry", run_at=NOW + timedelta(seconds=30))
    at = NOW + timedelta(hours=1)
    exc = RetryAfter(at=at, throttle_mailbox=True)
    retry = strategy.decide(exc, attempt=1, max_attempts=3, now=NOW)
    assert retry == Decision("retry", run_at=at, throttle_until=at) and exc.throttles_mailbox
    assert isinstance(exc, JobError) and isinstance(PermanentError("x"), JobError)
    with pytest.raises(ValueError, match="exactly one"):
        RetryAfter()
    with pytest.raises(ValueError, match="exactly one"):
        RetryAfter(5, at=at)
    with pytest.raises(ValueError, match="aware"):
        RetryAfter(at=datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="negative"):
        RetryAfter(-1)


def test_error_text_names_the_type_and_truncates() -> None:
    assert error_text(KeyError("mailbox")) == "KeyError: 'mailbox'"
    long = error_text(RuntimeError("x" * 5000))
    assert len(long) == 2000 and long.startswith("RuntimeError: xxx") and long.endswith("…")


def test_next_tick_is_the_next_multiple() -> None:
    assert next_tick(NOW, 3600) == NOW + timedelta(hours=1)
    assert next_tick(NOW - timedelta(seconds=1), 3600) == NOW
    assert next_tick(NOW + timedelta(minutes=7), 600) == NOW + timedelta(minutes=10)


async def _noop(ctx: JobContext) -> None:
    return None


def test_registry() -> None:
    registry = JobRegistry()
    registry.register("sync.appointment", _noop)

    @registry.job("maintenance.prune", every_seconds=3600)
    async def prune(ctx: JobContext) -> None:
        return None

    assert registry.kinds == ["maintenance.prune", "sync.appointment"]
    assert "sync.appointment" in registry and "sync.mailbox" not in registry
    assert [k.kind for k in registry.periodic] == ["maintenance.prune"]
    kind = registry.get("maintenance.prune")
    assert kind is not None and kind.handler is prune and kind.every_seconds == 3600
    assert registry.get("unknown.kind") is None
    with pytest.raises(ValueError, match="already registered"):
        registry.register("sync.appointment", _noop)
    with pytest.raises(ValueError, match="dotted"):
        registry.register("Sync Appointment", _noop)
    with pytest.raises(ValueError, match="at least 1 second"):
        registry.register("test.fast", _noop, every_seconds=0.5)
