"""The one way the Kafka adapters cross between their blocking threads and trio.

kafka-python's clients block and are not shared across threads, so each reader (a feed's
consumer, a history reader, the presence reader) lives on a thread of its own and hands what it
reads to trio through a ``Handover``; when its connection fails it waits and opens a fresh one
through ``reconnecting``. Both are written once here, so the adapters differ only in what they
read.

``Handover.put`` does not wait for trio to run: it schedules the item with the run's token
(``TrioToken.run_sync_soon``) and returns, so a busy reader keeps polling while trio works. It
waits only when ``capacity`` items are unread (backpressure: a slow consumer on the trio side
holds the thread back instead of letting memory grow), and gives up once the handover is closed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

import trio

T = TypeVar("T")

FIRST_DELAY = 0.5
"""Seconds before the first reconnection after a failure; doubled after each failure since."""

WAIT_SLICE = 0.2
"""Seconds a full handover waits at a time before it looks again whether it was closed."""


class Handover(Generic[T]):
    """A bounded, ordered queue from one worker thread into trio (see the module doc).

    Made on the trio thread. The worker calls ``put`` and, at the end of its stream, ``finish``;
    trio reads with ``items()`` and closes with ``aclose()``, after which ``put`` returns False.
    """

    def __init__(self, capacity: int) -> None:
        self._send, self._receive = trio.open_memory_channel[T](capacity)
        self._room = threading.Semaphore(capacity)
        """Items handed to trio and not yet taken: the worker gets at most this far ahead."""
        self._token = trio.lowlevel.current_trio_token()
        self.closed = threading.Event()
        """Set once trio no longer reads (it closed, or the run ended)."""

    # -- The worker thread ---------------------------------------------------------------------

    def put(self, item: T) -> bool:
        """Queue ``item`` for trio without waiting for trio to run; False once it is closed."""
        while not self._room.acquire(timeout=WAIT_SLICE):
            if self.closed.is_set():
                return False
        try:
            self._token.run_sync_soon(self._deliver, item)
        except trio.RunFinishedError:
            self.closed.set()
            return False
        return not self.closed.is_set()

    def finish(self) -> None:
        """End the stream after what was put: trio's ``items()`` ends once it has read it all."""
        try:
            self._token.run_sync_soon(self._send.close)
        except trio.RunFinishedError:
            self.closed.set()

    def _deliver(self, item: T) -> None:
        """On the trio thread: there is room (the semaphore says so), unless trio closed."""
        try:
            self._send.send_nowait(item)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self.closed.set()

    # -- The trio side -------------------------------------------------------------------------

    async def items(self) -> AsyncIterator[T]:
        """What the worker put, in order, until it finishes or this handover is closed."""
        async for item in self._receive:
            self._room.release()
            yield item

    async def aclose(self) -> None:
        """Stop reading: a worker waiting in ``put`` gives up within ``WAIT_SLICE``."""
        self.closed.set()
        await self._receive.aclose()


def reconnecting(
    session: Callable[[Callable[[], None]], None],
    *,
    stop: threading.Event,
    errors: tuple[type[BaseException], ...],
    log: logging.Logger,
    what: str,
    longest: float = 30.0,
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Run ``session`` until it returns or ``stop`` is set, opening it again after a failure.

    ``session`` opens its client, calls the ``connected`` function it is given once the client
    works (which resets the delay to ``FIRST_DELAY``), and works until done; it closes its own
    client. One of ``errors`` is logged (and passed to ``on_error``) and followed by a wait that
    doubles after each failure up to ``longest`` seconds; ``stop`` ends the wait at once.
    Anything else propagates: it is a bug, not an outage.
    """
    delay = FIRST_DELAY

    def connected() -> None:
        nonlocal delay
        delay = FIRST_DELAY

    while not stop.is_set():
        try:
            session(connected)
            return
        except errors as exc:
            if on_error is not None:
                on_error(exc)
            detail = str(exc) or type(exc).__name__
            log.warning("%s failed (%s); reconnecting in %.1fs", what, detail, delay)
        if stop.wait(delay):
            return
        delay = min(delay * 2, longest)
