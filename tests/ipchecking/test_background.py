"""Stopping background tasks, including ones that swallow a cancellation."""

from __future__ import annotations

import asyncio

from ipchecking.background import stop_task


def test_a_task_that_swallows_one_cancellation_is_still_stopped() -> None:
    async def scenario() -> None:
        swallowed = 0

        async def stubborn() -> None:
            nonlocal swallowed
            while True:
                try:
                    await asyncio.sleep(10)
                except asyncio.CancelledError:
                    if swallowed:
                        raise
                    swallowed += 1  # as a library dropping a connection may do

        task = asyncio.create_task(stubborn())
        await asyncio.sleep(0)
        await asyncio.wait_for(stop_task(task), timeout=5)
        assert task.cancelled()
        assert swallowed == 1

    asyncio.run(scenario())


def test_stopping_a_finished_or_missing_task_returns_at_once() -> None:
    async def scenario() -> None:
        async def fails() -> None:
            raise RuntimeError("boom")

        task = asyncio.create_task(fails())
        await asyncio.sleep(0)
        await stop_task(task)  # its error is retrieved, not re-raised
        await stop_task(None)

    asyncio.run(scenario())
