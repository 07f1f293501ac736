"""Waiting for a broker's acknowledgement from whatever code is calling.

Brokers answer with ``concurrent.futures.Future``s, resolved on their own threads. Synchronous code
waits with ``result()``; async code must not block its loop, so it awaits the future through its
own library: asyncio wraps it, trio wakes a task from the resolving thread.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import Future
from typing import TypeVar

import sniffio

T = TypeVar("T")


async def wait_future(future: Future[T]) -> T:
    """Await a thread-resolved future under asyncio or trio without blocking the event loop.

    Like every async call it is a checkpoint, even when the future is already resolved (the
    memory broker resolves at once): a loop of broadcasts lets other tasks run.
    """
    library = sniffio.current_async_library()
    if library == "asyncio":
        if future.done():
            await asyncio.sleep(0)
            return future.result()
        return await asyncio.wrap_future(future)
    if library == "trio":
        import trio

        if future.done():
            await trio.lowlevel.checkpoint()
            return future.result()
        token = trio.lowlevel.current_trio_token()
        resolved = trio.Event()

        def wake(_: Future[T]) -> None:
            try:
                token.run_sync_soon(resolved.set)
            except trio.RunFinishedError:
                pass  # the waiting run ended; nobody is left to wake

        future.add_done_callback(wake)
        await resolved.wait()
        return future.result()
    raise RuntimeError(f"tidings cannot await under {library!r}; use asyncio or trio")
