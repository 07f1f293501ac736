"""``RealtimeService``: the application's implementation of ``RealtimePort`` over publishers.

It validates every broadcast before it leaves the process (channel grammar, event name, JSON data,
size limit), picks the configured broker, and lets the caller wait in its own style: what the
broker answers (an ``Acknowledgement``) is the ``Pending`` that ``broadcast_nowait`` returns.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from ..domain import JSON, Channel, Message
from ..domain.errors import UnknownBroker
from ..ports import Pending, Publisher


class RealtimeService:
    """Broadcasts through the configured broker; other brokers are reachable by name."""

    def __init__(
        self,
        publishers: Mapping[str, Callable[[], Publisher]],
        default_broker: str,
        max_message_bytes: int,
    ) -> None:
        if default_broker not in publishers:
            raise UnknownBroker(default_broker, sorted(publishers))
        self._publishers = publishers
        self._default = default_broker
        self._max_message_bytes = max_message_bytes

    def broker(self, name: str | None = None) -> Publisher:
        chosen = name or self._default
        factory = self._publishers.get(chosen)
        if factory is None:
            raise UnknownBroker(chosen, sorted(self._publishers))
        return factory()

    def broadcast_nowait(
        self, channel: Channel | str, event: str, data: JSON = None, *, exclude: str | None = None
    ) -> Pending:
        message = Message.event(channel, event, data, exclude=exclude)
        return self.publish(message)

    def publish(self, message: Message) -> Pending:
        """Send a ready-made message through the default broker, after the size check."""
        message.check_size(self._max_message_bytes)
        return self.broker().publish(message.channel, message)

    def broadcast(
        self, channel: Channel | str, event: str, data: JSON = None, *, exclude: str | None = None
    ) -> Message:
        pending = self.broadcast_nowait(channel, event, data, exclude=exclude)
        pending.result()
        return pending.message

    async def abroadcast(
        self, channel: Channel | str, event: str, data: JSON = None, *, exclude: str | None = None
    ) -> Message:
        pending = self.broadcast_nowait(channel, event, data, exclude=exclude)
        await pending
        return pending.message

    def to_user(
        self, user_id: str | int, event: str, data: JSON = None, *, exclude: str | None = None
    ) -> Message:
        return self.broadcast(f"user.{user_id}", event, data, exclude=exclude)
