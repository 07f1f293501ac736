"""Test support for services that broadcast: a recording fake of ``RealtimePort``.

    def test_order_update_notifies_customer(fake_realtime):
        OrderService(fake_realtime).update(order_id=7, status="shipped")
        fake_realtime.assert_broadcast("user.42", "order.updated", {"order_id": 7, ...})

``fake_realtime`` is a pytest fixture shipped with tidings (a pytest plugin, active once tidings
is installed); it also replaces what ``tidings.realtime()`` and ``tidings.broadcast()`` use.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

from ..application.acknowledgement import Acknowledgement
from ..domain import JSON, Channel, Message, Position
from ..domain.errors import BrokerError
from ..ports import Pending

__all__ = ["ANY", "FakePublisher", "FakeRealtime"]


class _Any:
    """Matches any value in ``assert_broadcast`` (``data=ANY``)."""

    def __eq__(self, other: object) -> bool:
        return True

    def __repr__(self) -> str:
        return "ANY"


ANY: Any = _Any()


class FakePublisher:
    """A publisher that records instead of sending (implements ``Publisher``)."""

    def __init__(self, name: str, record: Callable[[Message], Acknowledgement]) -> None:
        self._name = name
        self._record = record

    @property
    def name(self) -> str:
        return self._name

    def publish(self, channel: Channel | str, message: Message) -> Acknowledgement:
        if Channel.of(channel) != message.channel:
            raise ValueError(f"publish on {channel!s} of a message for {message.channel.name}")
        return self._record(message)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        pass


class FakeRealtime:
    """Records every broadcast, validates it as the real service does, and asserts on it."""

    def __init__(self, *, max_message_bytes: int = 65_536) -> None:
        self.broadcasts: list[Message] = []
        self._max_message_bytes = max_message_bytes
        self._failure: BrokerError | None = None
        self._offsets = itertools.count()

    # -- RealtimePort ------------------------------------------------------------------------

    def _record(self, message: Message) -> Acknowledgement:
        message.check_size(self._max_message_bytes)
        if self._failure is not None:
            return Acknowledgement.failed(message, self._failure)
        self.broadcasts.append(message)
        return Acknowledgement.acknowledged(message, Position("fa4efa4efa4e", next(self._offsets)))

    def broadcast_nowait(
        self, channel: Channel | str, event: str, data: JSON = None, *, exclude: str | None = None
    ) -> Pending:
        message = Message.event(channel, event, data, exclude=exclude)
        return self._record(message)

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

    def broker(self, name: str | None = None) -> FakePublisher:
        return FakePublisher(name or "fake", self._record)

    # -- Test helpers ------------------------------------------------------------------------

    def fail_with(self, error: BrokerError | None) -> None:
        """Make later broadcasts fail with ``error`` (None: succeed again), to test error paths."""
        self._failure = error

    def on(self, channel: Channel | str) -> list[Message]:
        """What was broadcast on ``channel``, in order."""
        name = Channel.of(channel).name
        return [message for message in self.broadcasts if message.channel.name == name]

    def clear(self) -> None:
        self.broadcasts.clear()

    def assert_broadcast(
        self, channel: Channel | str, event: str | None = None, data: JSON = ANY
    ) -> Message:
        """The one matching broadcast; fails listing what was broadcast when there is none."""
        name = Channel.of(channel).name
        for message in self.broadcasts:
            if message.channel.name != name:
                continue
            if event is not None and message.event != event:
                continue
            if data == message.data:  # ANY on the left matches everything
                return message
        raise AssertionError(
            f"no broadcast on {name!r}"
            + (f" with event {event!r}" if event else "")
            + ("" if data is ANY else f" and data {data!r}")
            + "; broadcast were:\n"
            + self._listing()
        )

    def assert_nothing_broadcast(self) -> None:
        if self.broadcasts:
            raise AssertionError("expected no broadcast; got:\n" + self._listing())

    def _listing(self) -> str:
        if not self.broadcasts:
            return "  (nothing)"
        return "\n".join(
            f"  {message.channel.name} {message.event} {message.data!r}"
            for message in self.broadcasts
        )
