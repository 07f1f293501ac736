"""Subscribing: how messages reach a consumer from the broker, in batches, with commits."""

from __future__ import annotations

import enum
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import Any, Protocol

import attrs

from ..domain import Channel, Message, Position


class GroupMode(enum.StrEnum):
    """How several consumers of one name share the stream.

    ``fanout``: every process sees every message (each node has its own stable group); gateways
    always fan out. ``shared``: the processes of one group split the messages between them (the
    seed's load balancing), for worker-style processing.
    """

    FANOUT = "fanout"
    SHARED = "shared"


class Delivered:
    """A message read from the broker, with its position in its stream.

    ``channel`` (the name) is always at hand. ``message`` may be built only when first asked for
    (``Delivered.undecoded``): a gateway routes on the channel alone, so the messages of channels
    none of its clients hold (most of the stream, on one node of many) are never built.
    """

    __slots__ = ("_envelope", "_message", "channel", "position")

    def __init__(self, message: Message, position: Position | None) -> None:
        self._message: Message | None = message
        self._envelope: dict[str, Any] | None = None
        self.channel = message.channel.name
        self.position = position

    @classmethod
    def undecoded(
        cls, channel: str, envelope: dict[str, Any], position: Position | None
    ) -> Delivered:
        """A delivery of a decoded JSON envelope whose channel name is checked already."""
        delivered = cls.__new__(cls)
        delivered._message, delivered._envelope = None, envelope
        delivered.channel, delivered.position = channel, position
        return delivered

    @property
    def message(self) -> Message:
        """The message; raises ``InvalidMessage`` when an undecoded envelope is not one."""
        message = self._message
        if message is None:
            assert self._envelope is not None
            message = self._build(self._envelope)
            self._message, self._envelope = message, None
        return message

    def _build(self, envelope: dict[str, Any]) -> Message:
        """The message of an undecoded envelope; an adapter whose decoder can also encode the
        data faster than the standard library overrides it (``Message.from_dict(data_json=)``)."""
        return Message.from_dict(envelope, trusted=True)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Delivered):
            return NotImplemented
        return (self.message, self.position) == (other.message, other.position)

    def __hash__(self) -> int:
        return hash((self.message, self.position))

    def __repr__(self) -> str:
        shown = self._message if self._message is not None else f"<undecoded on {self.channel}>"
        return f"Delivered({shown!r}, {self.position!r})"


@attrs.frozen
class FeedOptions:
    channels: tuple[Channel, ...] | None = None
    """The channels to read; None reads every channel the broker carries (gateways)."""
    group_mode: GroupMode = GroupMode.FANOUT
    batch_size: int = 100
    timeout: float = 1.0
    """Seconds one poll waits for messages before yielding an empty batch."""
    group: str = "realtime-servers"
    """``KAFKA_CONSUMER_GROUP``: the group itself in shared mode, the base of it in fan-out mode."""
    node_id: str = "node"
    """This process's stable identity; names its own group in fan-out mode."""
    start_at_end: bool = False
    """Where a group that has committed nothing starts: at the end of the channels that exist
    (gateways: nobody was there to want the past) or at their beginning (workers, the consume
    command: process everything retained). Channels created later always start at the beginning.
    """

    def group_id(self) -> str:
        """The consumer group: shared by all in shared mode, one per node in fan-out mode."""
        if self.group_mode is GroupMode.SHARED:
            return self.group
        return f"{self.group}.{self.node_id}"


@attrs.frozen
class FeedStatus:
    """How a feed is doing, for health checks."""

    connected: bool
    lag: int | None = None
    """Messages in the broker not yet handed over, when known."""
    error: str | None = None
    """The last error talking to the broker, while it lasts."""
    misplaced: int = 0
    """Records dropped since the feed opened because their envelope names a channel their topic
    does not carry (ADR 0016); ``/metrics`` counts them as ``reason="wrong_topic"``."""
    undecodable: int = 0
    """Records dropped since the feed opened because they are not message envelopes."""


class Feed(Protocol):
    """An open subscription: batches in order, and a commit once a batch has been handed on."""

    def batches(self) -> AsyncIterator[Sequence[Delivered]]:
        """Batches of at most ``batch_size`` messages; an empty batch means a poll timed out."""
        ...

    async def commit(self, handed: Sequence[Delivered] | None = None) -> None:
        """Record as handed on every batch yielded so far, or exactly ``handed`` of the last one.

        Committed messages are not delivered again to this group after a restart; the rest are.
        """
        ...

    def caught_up(self) -> bool:
        """Whether everything that was in the broker when the feed opened has been yielded."""
        ...

    def status(self) -> FeedStatus: ...

    def frontier(self, channel: Channel) -> Position:
        """How far this feed has handed over ``channel``'s stream.

        Everything after the returned position will still come out of ``batches``; a client that
        subscribes now is told this position, so it can resume from it after a disconnect even if
        it never received a message.
        """
        ...


class Subscriber(Protocol):
    """A broker's read side."""

    @property
    def name(self) -> str: ...

    def open_feed(self, options: FeedOptions) -> AbstractAsyncContextManager[Feed]: ...


class History(Protocol):
    """What a broker still retains of a channel, for clients that resume from a position."""

    def replay(self, channel: Channel, since: Position) -> AsyncIterator[Sequence[Delivered]]:
        """Messages of ``channel`` after ``since``, up to the present, in batches.

        Raises ``InvalidPosition`` when ``since`` belongs to another stream (topic, cluster or
        broker run) and ``PositionExpired`` when the broker no longer holds what follows it.
        """
        ...
