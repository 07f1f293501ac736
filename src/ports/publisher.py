"""Publishing: how a message leaves the process for the broker."""

from __future__ import annotations

from concurrent.futures import Future
from typing import Protocol

from ..domain import Channel, Message, Position


class Publisher(Protocol):
    """A broker's write side. ``publish`` never blocks beyond enqueueing the message.

    The returned future resolves to the message's position once the broker has acknowledged it
    (None when a durable outbox took it first), or fails with ``BrokerUnavailable`` /
    ``BrokerOverloaded``; nothing is dropped silently. It always resolves in bounded time.
    """

    @property
    def name(self) -> str:
        """The broker's name in configuration (``memory``, ``kafka``)."""
        ...

    def publish(self, channel: Channel | str, message: Message) -> Future[Position | None]: ...

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything published so far is acknowledged or failed."""
        ...

    def close(self) -> None: ...
