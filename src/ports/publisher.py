"""Publishing: how a message leaves the process for the broker, and how its answer comes back."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Protocol

from ..domain import Channel, Message, Position

log = logging.getLogger("tidings.publisher")

_PENDING, _ACKNOWLEDGED, _FAILED = 0, 1, 2
_STATES = {_PENDING: "pending", _ACKNOWLEDGED: "acknowledged", _FAILED: "failed"}

_settling = threading.Lock()
"""Guards every acknowledgement's state and callbacks: held for a few instructions at a time."""


class Acknowledgement:
    """The broker's answer to one published message, settled once, from any thread.

    It has the part of ``concurrent.futures.Future`` that publishing needs (``done``, ``result``,
    ``exception``, ``add_done_callback``) at a fraction of its weight: one small object with no
    lock, condition or list of its own until somebody waits or registers a callback. A publisher
    that keeps 100,000 messages in flight keeps 100,000 of these, and the cyclic garbage
    collector walks them all (ADR 0014).
    """

    __slots__ = ("_callbacks", "_state", "_value")

    def __init__(self) -> None:
        self._state = _PENDING
        self._value: Position | BaseException | None = None
        self._callbacks: list[Callable[[Acknowledgement], object]] | None = None

    @classmethod
    def acknowledged(cls, position: Position | None) -> Acknowledgement:
        """An answer that is already in: the broker took the message at ``position``."""
        settled = cls()
        settled._state, settled._value = _ACKNOWLEDGED, position
        return settled

    @classmethod
    def failed(cls, error: BaseException) -> Acknowledgement:
        """An answer that is already in: the broker refused the message with ``error``."""
        settled = cls()
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

    def __repr__(self) -> str:
        return f"<Acknowledgement {_STATES[self._state]}>"


class Publisher(Protocol):
    """A broker's write side. ``publish`` never blocks beyond enqueueing the message.

    The returned acknowledgement resolves to the message's position once the broker has taken it
    (None when a durable outbox took it first), or fails with ``BrokerUnavailable`` /
    ``BrokerOverloaded``; nothing is dropped silently. It always resolves in bounded time.
    """

    @property
    def name(self) -> str:
        """The broker's name in configuration (``memory``, ``kafka``)."""
        ...

    def publish(self, channel: Channel | str, message: Message) -> Acknowledgement: ...

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything published so far is acknowledged or failed."""
        ...

    def close(self) -> None: ...
