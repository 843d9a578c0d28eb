"""Whether an event loop keeps running while it awaits work: a 5 ms ticker beside the work."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from typing import TypeVar

T = TypeVar("T")


async def while_ticking(work: Awaitable[T]) -> tuple[T, int]:
    """`work`'s result, and how many times a ticker that sleeps 5 ms a turn ran on the same
    event loop meanwhile (a loop blocked by the work ticks about never)."""
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            ticks += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(ticker())
    try:
        result = await work
    finally:
        done.set()
        await task
    return result, ticks
