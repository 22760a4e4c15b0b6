"""Helpers for the runtimes' background tasks."""

from __future__ import annotations

import asyncio

#: How long a cancelled task gets to end before it is cancelled again.
_RECANCEL_AFTER = 0.5


async def stop_task(task: asyncio.Task[None] | None) -> None:
    """Cancel a background task (if any) and wait until it has ended.

    A library may swallow one cancellation (redis-py can, while it drops a
    connection of a command in flight); the task is then cancelled again
    rather than waited for forever.
    """
    if task is None:
        return
    while not task.done():
        task.cancel()
        await asyncio.wait({task}, timeout=_RECANCEL_AFTER)
    if not task.cancelled():
        task.exception()  # retrieved: an error at shutdown is not worth a warning
