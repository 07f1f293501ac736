"""Publishing: how a message leaves the process for the broker, and how its answer comes back."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Protocol

from ..domain import Channel, Message, Position


class Pending(Protocol):
    """A broadcast handed to the broker and not yet acknowledged.

    Wait for it the way the calling code waits: ``result(timeout)`` in synchronous code,
    ``await pending`` under asyncio or trio. Either raises the broker's error if it failed.
    ``tidings.application.acknowledgement.Acknowledgement`` is the implementation every
    publisher returns.
    """

    @property
    def message(self) -> Message: ...

    def done(self) -> bool: ...

    def result(self, timeout: float | None = None) -> Position | None:
        """The message's position, or None when an outbox accepted it before the broker did."""
        ...

    def exception(self, timeout: float | None = None) -> BaseException | None: ...

    def add_done_callback(self, callback: Callable[[Any], object]) -> None: ...

    def __await__(self) -> Generator[Any, None, Position | None]: ...


class Publisher(Protocol):
    """A broker's write side. ``publish`` never blocks beyond enqueueing the message.

    The returned acknowledgement resolves to the message's position once the broker has taken it
    (None when a durable outbox took it first), or fails with ``BrokerUnavailable`` /
    ``BrokerOverloaded``; nothing is dropped silently. It always resolves in bounded time.
    """

    @property
    def name(self) -> str:
        """The broker's name in configuration (``memory``, ``kafka``, ``gateway``)."""
        ...

    def publish(self, channel: Channel | str, message: Message) -> Pending: ...

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything published so far is acknowledged or failed."""
        ...

    def close(self) -> None: ...
