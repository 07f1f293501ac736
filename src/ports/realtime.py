"""The port services depend on to broadcast: ``RealtimePort``."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any, Protocol

from ..domain import JSON, Channel, Message, Position
from .publisher import Publisher


class Pending(Protocol):
    """A broadcast handed to the broker and not yet acknowledged.

    Wait for it the way the calling code waits: ``result(timeout)`` in synchronous code,
    ``await pending`` under asyncio or trio. Either raises the broker's error if it failed.
    """

    @property
    def message(self) -> Message: ...

    def done(self) -> bool: ...

    def result(self, timeout: float | None = None) -> Position | None:
        """The message's position, or None when an outbox accepted it before the broker did."""
        ...

    def add_done_callback(self, callback: Callable[[Pending], object]) -> None: ...

    def __await__(self) -> Generator[Any, None, Position | None]: ...


class RealtimePort(Protocol):
    """Broadcast to channels. Inject it into services; tests use ``testing.FakeRealtime``.

    Every method validates first (``InvalidChannel``, ``InvalidMessage``, ``MessageTooLarge``) and
    raises ``BrokerUnavailable`` when the broker cannot take the message: nothing is lost silently.
    """

    def broadcast(
        self, channel: Channel | str, event: str, data: JSON = None, *, exclude: str | None = None
    ) -> Message:
        """Publish and wait for the broker's acknowledgement (for synchronous code).

        ``exclude`` is a connection id (the sender's ``socket_id``) that must not receive it.
        """
        ...

    async def abroadcast(
        self, channel: Channel | str, event: str, data: JSON = None, *, exclude: str | None = None
    ) -> Message:
        """Publish and await the acknowledgement without blocking the loop (asyncio or trio)."""
        ...

    def broadcast_nowait(
        self, channel: Channel | str, event: str, data: JSON = None, *, exclude: str | None = None
    ) -> Pending:
        """Publish without waiting; the result says later whether the broker took it."""
        ...

    def to_user(
        self, user_id: str | int, event: str, data: JSON = None, *, exclude: str | None = None
    ) -> Message:
        """Broadcast on the private channel ``user.{user_id}`` of one user."""
        ...

    def broker(self, name: str | None = None) -> Publisher:
        """A broker's publisher by name (``memory``, ``kafka``); by default the configured one."""
        ...
