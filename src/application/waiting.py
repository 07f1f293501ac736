"""Waiting for a broker's acknowledgement from whatever code is calling.

Brokers answer with an ``Acknowledgement``, settled on their own threads. Synchronous code waits
with ``result()``; async code must not block its loop, so it is woken through its own library:
asyncio by a callback scheduled on its loop, trio by a callback run through the run's token.
"""

from __future__ import annotations

import asyncio

import sniffio

from ..domain import Position
from ..ports import Acknowledgement


async def wait_for(ack: Acknowledgement) -> Position | None:
    """Await a thread-settled acknowledgement under asyncio or trio without blocking the loop.

    Like every async call it is a checkpoint, even when the answer is already in (the memory
    broker answers at once): a loop of broadcasts lets other tasks run.
    """
    library = sniffio.current_async_library()
    if library == "asyncio":
        if ack.done():
            await asyncio.sleep(0)
            return ack.result()
        loop = asyncio.get_running_loop()
        settled = loop.create_future()

        def wake_asyncio() -> None:
            if not settled.done():  # the waiting task may have been cancelled
                settled.set_result(None)

        def call_asyncio(_: Acknowledgement) -> None:
            try:
                loop.call_soon_threadsafe(wake_asyncio)
            except RuntimeError:
                pass  # the loop is closed; nobody is left to wake

        ack.add_done_callback(call_asyncio)
        await settled
        return ack.result()
    if library == "trio":
        import trio

        if ack.done():
            await trio.lowlevel.checkpoint()
            return ack.result()
        token = trio.lowlevel.current_trio_token()
        resolved = trio.Event()

        def call_trio(_: Acknowledgement) -> None:
            try:
                token.run_sync_soon(resolved.set)
            except trio.RunFinishedError:
                pass  # the waiting run ended; nobody is left to wake

        ack.add_done_callback(call_trio)
        await resolved.wait()
        return ack.result()
    raise RuntimeError(f"tidings cannot await under {library!r}; use asyncio or trio")
