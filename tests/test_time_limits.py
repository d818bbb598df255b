"""The shared-timer time limits the Redis store puts on every call."""

from __future__ import annotations

import asyncio

import pytest

from greentic_session.backends.redis.time_limits import Deadlines


async def _forever() -> None:
    await asyncio.Event().wait()


async def _value(result: int) -> int:
    await asyncio.sleep(0)
    return result


async def test_a_call_that_outlives_its_limit_raises_timeout_error_in_the_window() -> None:
    """A stuck call ends with TimeoutError after between timeout and timeout + granularity."""
    deadlines = Deadlines(0.05, granularity=0.01)
    loop = asyncio.get_running_loop()
    started = loop.time()
    with pytest.raises(TimeoutError):
        await deadlines.run(_forever)
    assert 0.05 <= loop.time() - started < 0.05 + 0.01 + 1.0
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0, "the timer's cancel must be balanced by an uncancel"


async def test_calls_that_finish_in_time_return_their_value_and_are_never_cancelled() -> None:
    """Finished calls are untouched when their batch's timer fires later."""
    deadlines = Deadlines(0.05)
    assert await deadlines.run(_value, 7) == 7
    stuck = asyncio.create_task(deadlines.run(_forever))
    assert await deadlines.run(_value, 8) == 8  # same batch as the stuck call
    with pytest.raises(TimeoutError):
        await stuck
    assert await deadlines.run(_value, 9) == 9


async def test_a_callers_own_cancellation_passes_through() -> None:
    """Cancelling the calling task raises CancelledError, never TimeoutError."""
    deadlines = Deadlines(5.0)
    waiting = asyncio.Event()

    async def signal_then_wait() -> None:
        waiting.set()
        await _forever()

    call = asyncio.create_task(deadlines.run(signal_then_wait))
    await waiting.wait()
    call.cancel()
    with pytest.raises(asyncio.CancelledError):
        await call
    assert call.cancelled()


async def test_an_outer_timeout_wins_over_a_longer_limit() -> None:
    """An enclosing asyncio.timeout still fires as its own TimeoutError and leaves no cancel."""
    deadlines = Deadlines(5.0)
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.02):
            await deadlines.run(_forever)
    task = asyncio.current_task()
    assert task is not None
    assert task.cancelling() == 0


def test_one_instance_serves_successive_event_loops() -> None:
    """A batch belongs to one loop; a call on a new loop arms a timer on that loop."""
    deadlines = Deadlines(0.03)

    async def stuck_then_ok() -> int:
        with pytest.raises(TimeoutError):
            await deadlines.run(_forever)
        return await deadlines.run(_value, 1)

    assert asyncio.run(stuck_then_ok()) == 1
    assert asyncio.run(stuck_then_ok()) == 1
