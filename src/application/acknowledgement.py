"""The broker's answer to one published message: ``Acknowledgement``, settled from any thread.

Publishers (the memory broker, Kafka's worker thread, the outbox) settle it; callers wait for it
the way their code waits: ``result(timeout)`` in synchronous code, ``await`` under asyncio or trio
(``sniffio`` tells which), without blocking the loop. It implements the ``Pending`` port.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Callable, Generator
from typing import Any

import sniffio

from ..domain import Message, Position

log = logging.getLogger("tidings.publisher")

_PENDING, _ACKNOWLEDGED, _FAILED = 0, 1, 2
_STATES = {_PENDING: "pending", _ACKNOWLEDGED: "acknowledged", _FAILED: "failed"}

_settling = threading.Lock()
"""Guards every acknowledgement's state and callbacks: held for a few instructions at a time."""


def _renew_settling_lock() -> None:
    # A thread of the parent may have held it at the moment of fork(); in the child that thread
    # is gone and would never release it (src/adapters/forks.py renews the publishers).
    global _settling
    _settling = threading.Lock()


os.register_at_fork(after_in_child=_renew_settling_lock)


class Acknowledgement:
    """The broker's answer to one published message, settled once, from any thread.

    It has the part of ``concurrent.futures.Future`` that publishing needs (``done``, ``result``,
    ``exception``, ``add_done_callback``) at a fraction of its weight: one small object with no
    lock, condition or list of its own until somebody waits or registers a callback. A publisher
    that keeps 100,000 messages in flight keeps 100,000 of these, and the cyclic garbage
    collector walks them all (ADR 0011). It is also what ``broadcast_nowait`` returns (it
    implements ``Pending``): await it under asyncio or trio, or wait with ``result()``.
    """

    __slots__ = ("_callbacks", "_state", "_value", "message")

    def __init__(self, message: Message) -> None:
        self.message = message
        """The message this answers for."""
        self._state = _PENDING
        self._value: Position | BaseException | None = None
        self._callbacks: list[Callable[[Acknowledgement], object]] | None = None

    @classmethod
    def acknowledged(cls, message: Message, position: Position | None) -> Acknowledgement:
        """An answer that is already in: the broker took ``message`` at ``position``."""
        settled = cls(message)
        settled._state, settled._value = _ACKNOWLEDGED, position
        return settled

    @classmethod
    def failed(cls, message: Message, error: BaseException) -> Acknowledgement:
        """An answer that is already in: the broker refused ``message`` with ``error``."""
        settled = cls(message)
        settled._state, settled._value = _FAILED, error
        return settled

    def done(self) -> bool:
        return self._state != _PENDING

    def result(self, timeout: float | None = None) -> Position | None:
        """The message's position (None when an outbox took it first), or the broker's error.

        Waits at most ``timeout`` seconds (forever when None); raises ``TimeoutError`` after.
        """
        if self._state == _PENDING:
            self._wait(timeout)
        value = self._value
        if isinstance(value, BaseException):
            raise value
        return value

    def exception(self, timeout: float | None = None) -> BaseException | None:
        """The broker's error, or None once the message is acknowledged (waits like ``result``)."""
        if self._state == _PENDING:
            self._wait(timeout)
        value = self._value
        return value if isinstance(value, BaseException) else None

    def add_done_callback(self, callback: Callable[[Acknowledgement], object]) -> None:
        """Call ``callback(self)`` once settled: at once if it is, else on the settling thread."""
        with _settling:
            if self._state == _PENDING:
                if self._callbacks is None:
                    self._callbacks = [callback]
                else:
                    self._callbacks.append(callback)
                return
        self._call(callback)

    def set_result(self, position: Position | None) -> None:
        """Settle as acknowledged; for publishers. A second settlement is a bug: RuntimeError."""
        self._settle(_ACKNOWLEDGED, position)

    def set_exception(self, error: BaseException) -> None:
        """Settle as failed; for publishers. A second settlement is a bug: RuntimeError."""
        self._settle(_FAILED, error)

    def _settle(self, state: int, value: Position | BaseException | None) -> None:
        with _settling:
            if self._state != _PENDING:
                raise RuntimeError(f"{self!r} is settled already")
            self._value = value
            self._state = state
            callbacks, self._callbacks = self._callbacks, None
        for callback in callbacks or ():
            self._call(callback)

    def _call(self, callback: Callable[[Acknowledgement], object]) -> None:
        try:
            callback(self)
        except Exception:
            log.exception("callback %r of %r failed", callback, self)

    def _wait(self, timeout: float | None) -> None:
        # A lock taken here and released by the settling thread: the cheapest one-shot wake-up.
        settled = threading.Lock()
        settled.acquire()
        self.add_done_callback(lambda _: settled.release())
        if not settled.acquire(timeout=-1 if timeout is None else max(0.0, timeout)):
            raise TimeoutError(f"no answer from the broker within {timeout:g}s")

    def __await__(self) -> Generator[Any, None, Position | None]:
        return self._settled().__await__()

    async def _settled(self) -> Position | None:
        """Wait under asyncio or trio without blocking the loop: the settling thread wakes the
        waiting task through its own library. Like every async call it is a checkpoint, even
        when the answer is in already (the memory broker answers at once): a loop of
        broadcasts lets other tasks run."""
        library = sniffio.current_async_library()
        if library == "asyncio":
            if not self.done():
                await _settled_under_asyncio(self)
            else:
                await asyncio.sleep(0)
        elif library == "trio":
            if not self.done():
                await _settled_under_trio(self)
            else:
                import trio

                await trio.lowlevel.checkpoint()
        else:
            raise RuntimeError(f"tidings cannot await under {library!r}; use asyncio or trio")
        return self.result()

    def __repr__(self) -> str:
        message = self.message
        return f"<Acknowledgement of {message.channel.name}/{message.event} {_STATES[self._state]}>"


async def _settled_under_asyncio(ack: Acknowledgement) -> None:
    loop = asyncio.get_running_loop()
    settled = loop.create_future()

    def wake() -> None:
        if not settled.done():  # the waiting task may have been cancelled
            settled.set_result(None)

    def call_soon(_: Acknowledgement) -> None:
        try:
            loop.call_soon_threadsafe(wake)
        except RuntimeError:
            pass  # the loop is closed; nobody is left to wake

    ack.add_done_callback(call_soon)
    await settled


async def _settled_under_trio(ack: Acknowledgement) -> None:
    import trio

    token = trio.lowlevel.current_trio_token()
    settled = trio.Event()

    def call_soon(_: Acknowledgement) -> None:
        try:
            token.run_sync_soon(settled.set)
        except trio.RunFinishedError:
            pass  # the waiting run ended; nobody is left to wake

    ack.add_done_callback(call_soon)
    await settled.wait()
