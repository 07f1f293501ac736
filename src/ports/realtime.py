"""The port services depend on to broadcast: ``RealtimePort``."""

from __future__ import annotations

from typing import Protocol

from ..domain import JSON, Channel, Message
from .publisher import Pending, Publisher


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
        """A broker's publisher by name (``memory``, ``kafka``, ``gateway``); by default the
        configured one."""
        ...
