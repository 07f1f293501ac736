"""The embedded broker: publish and subscribe inside one process, with a short history.

It is a product feature for single-process deployments and development, not a stand-in for
Kafka. Semantics, so users can rely on them:

* Every open feed receives each message published after it opened (fan-out); feeds opened in
  ``shared`` mode with the same group split the channels between them, one channel always going
  to the same member so its order holds.
* Each channel keeps its last ``history_size`` messages with positions, for resume, within two
  bounds on the whole: ``history_channels`` channels and ``history_bytes`` of messages. Past
  them the oldest messages of the least recently used channels go first (resuming from them
  gets 410, as positions from before a restart do).
* Each feed's queue holds at most ``queue_size`` messages. A publish that would overflow any
  target feed's queue is refused whole with ``BrokerOverloaded``: no feed gets a message another
  misses, nothing is dropped silently, memory stays bounded.

``publish`` is thread-safe and never blocks; feeds are consumed from trio.
"""

from __future__ import annotations

import threading
import uuid
import zlib
from collections import OrderedDict, deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from ...domain import Channel, Message, Position
from ...domain.errors import BrokerOverloaded, BrokerUnavailable, InvalidPosition, PositionExpired
from ...domain.position import stream_id
from ...ports import Acknowledgement, Delivered, FeedOptions, FeedStatus, GroupMode


class _ChannelLog:
    __slots__ = ("entries", "next_offset", "sizes", "stream")

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.next_offset = 0
        self.entries: deque[Delivered] = deque()
        self.sizes: deque[int] = deque()


class MemoryFeed:
    """One subscription to the memory broker (implements ``Feed``)."""

    def __init__(self, broker: MemoryBroker, options: FeedOptions, queue_size: int) -> None:
        self._broker = broker
        self.options = options
        self._channels = (
            None if options.channels is None else {channel.name for channel in options.channels}
        )
        self._queue: deque[Delivered] = deque()
        self._queue_size = queue_size
        self._token = trio.lowlevel.current_trio_token()
        self._arrived = trio.Event()
        self._wake_pending = False

    def wants(self, channel: str) -> bool:
        return self._channels is None or channel in self._channels

    def has_room(self) -> bool:
        return len(self._queue) < self._queue_size

    def push(self, delivered: Delivered) -> None:
        """Called with the broker's lock held, from any thread."""
        self._queue.append(delivered)
        if not self._wake_pending:
            self._wake_pending = True
            try:
                self._token.run_sync_soon(self._wake)
            except trio.RunFinishedError:
                pass

    def _wake(self) -> None:
        self._wake_pending = False
        self._arrived.set()

    async def batches(self) -> AsyncIterator[Sequence[Delivered]]:
        size = self.options.batch_size
        while True:
            if not self._queue:
                self._arrived = trio.Event()
                with trio.move_on_after(self.options.timeout):
                    await self._arrived.wait()
            batch = self._broker.take(self._queue, size)
            if not batch:
                # The queue may fill between the wait and the take; checkpoint either way.
                await trio.lowlevel.checkpoint()
            yield batch

    async def commit(self, handed: Sequence[Delivered] | None = None) -> None:
        """Nothing to persist: the memory broker keeps no offsets across runs."""
        await trio.lowlevel.checkpoint()

    def caught_up(self) -> bool:
        return not self._queue

    def frontier(self, channel: Channel) -> Position:
        return self._broker.frontier(channel, self._queue)

    def status(self) -> FeedStatus:
        return FeedStatus(connected=True, lag=len(self._queue))


class MemoryBroker:
    """Publisher, subscriber and history in one object (see the module doc)."""

    name = "memory"

    def __init__(
        self,
        *,
        history_size: int = 1000,
        history_channels: int = 10_000,
        history_bytes: int = 64 * 1024 * 1024,
        queue_size: int = 10_000,
    ) -> None:
        self._lock = threading.Lock()
        self._epoch = uuid.uuid4().hex
        self._history_size = history_size
        self._history_channels = max(1, history_channels)
        self._history_bytes = history_bytes
        self._held_bytes = 0
        self._queue_size = queue_size
        self._logs: OrderedDict[str, _ChannelLog] = OrderedDict()
        self._evictions = 0
        self._feeds: list[MemoryFeed] = []
        self._closed = False

    # -- Publisher ---------------------------------------------------------------------------

    def publish(self, channel: Channel | str, message: Message) -> Acknowledgement:
        target = Channel.of(channel)
        if target != message.channel:
            raise ValueError(
                f"publish on {target.name!r} of a message for {message.channel.name!r}"
            )
        name = target.name
        with self._lock:
            if self._closed:
                return Acknowledgement.failed(
                    message, BrokerUnavailable(["memory"], "the memory broker is closed")
                )
            feeds = self._targets(name)
            full = [feed for feed in feeds if not feed.has_room()]
            if full:
                return Acknowledgement.failed(
                    message,
                    BrokerOverloaded(
                        f"memory broker: {len(full)} subscriber queue(s) full "
                        f"({self._queue_size} messages); message {message.id} on {name!r} "
                        "was not published"
                    ),
                )
            log = self._log(name)
            position = Position(log.stream, log.next_offset)
            log.next_offset += 1
            delivered = Delivered(message, position)
            self._remember(log, delivered)
            for feed in feeds:
                feed.push(delivered)
        return Acknowledgement.acknowledged(message, position)

    def _log(self, name: str) -> _ChannelLog:
        """The channel's log, made on its first message; called with the lock held."""
        log = self._logs.get(name)
        if log is None:
            log = self._logs[name] = _ChannelLog(self._stream(name))
            while len(self._logs) > self._history_channels:
                self._drop_log()
        else:
            self._logs.move_to_end(name)
        return log

    def _remember(self, log: _ChannelLog, delivered: Delivered) -> None:
        """Keep a message for resume within the bounds (see the module doc); lock held."""
        if self._history_size <= 0:
            return
        size = delivered.message.size
        log.entries.append(delivered)
        log.sizes.append(size)
        self._held_bytes += size
        if len(log.entries) > self._history_size:
            log.entries.popleft()
            self._held_bytes -= log.sizes.popleft()
        while self._held_bytes > self._history_bytes and self._logs:
            oldest = next(iter(self._logs.values()))
            if not oldest.entries or (oldest is log and len(log.entries) == 1):
                self._drop_log()
                continue
            oldest.entries.popleft()
            self._held_bytes -= oldest.sizes.popleft()

    def _drop_log(self) -> None:
        _, dropped = self._logs.popitem(last=False)
        self._held_bytes -= sum(dropped.sizes)
        self._evictions += 1

    def _stream(self, name: str) -> str:
        """The stream of the channel's log, or of the log its next message will make.

        The number of logs dropped so far is part of it: a log made after an older one of the
        same channel was dropped gets another stream, so no earlier position can be mistaken
        for one of it. Channels that are only subscribed to cost nothing here.
        """
        log = self._logs.get(name)
        if log is not None:
            return log.stream
        return stream_id("memory", self._epoch, name, self._evictions)

    def _targets(self, channel: str) -> list[MemoryFeed]:
        targets: list[MemoryFeed] = []
        shared: dict[str, list[MemoryFeed]] = {}
        for feed in self._feeds:
            if not feed.wants(channel):
                continue
            if feed.options.group_mode is GroupMode.SHARED:
                shared.setdefault(feed.options.group_id(), []).append(feed)
            else:
                targets.append(feed)
        for members in shared.values():
            targets.append(members[zlib.crc32(channel.encode()) % len(members)])
        return targets

    def take(self, queue: deque[Delivered], size: int) -> list[Delivered]:
        with self._lock:
            count = min(size, len(queue))
            return [queue.popleft() for _ in range(count)]

    def frontier(self, channel: Channel, queue: deque[Delivered]) -> Position:
        """The last position of ``channel`` not waiting in ``queue``: what a feed handed over."""
        with self._lock:
            for delivered in queue:
                if delivered.message.channel == channel:
                    assert delivered.position is not None
                    return Position(delivered.position.stream, _offset(delivered) - 1)
            log = self._logs.get(channel.name)
            if log is None:
                return Position(self._stream(channel.name), -1)
            return Position(log.stream, log.next_offset - 1)

    def flush(self, timeout: float | None = None) -> None:
        """Publishing is synchronous here; nothing is ever in flight."""

    def close(self) -> None:
        with self._lock:
            self._closed = True

    # -- Subscriber --------------------------------------------------------------------------

    @asynccontextmanager
    async def open_feed(self, options: FeedOptions) -> AsyncIterator[MemoryFeed]:
        feed = MemoryFeed(self, options, self._queue_size)
        with self._lock:
            self._feeds.append(feed)
        try:
            yield feed
        finally:
            with self._lock:
                self._feeds.remove(feed)

    # -- History -----------------------------------------------------------------------------

    def stream_of(self, channel: Channel) -> str:
        with self._lock:
            return self._stream(channel.name)

    async def replay(self, channel: Channel, since: Position) -> AsyncIterator[Sequence[Delivered]]:
        with self._lock:
            stream = self._stream(channel.name)
            log = self._logs.get(channel.name)
            entries = list(log.entries) if log else []
            next_offset = log.next_offset if log else 0
        if since.stream != stream:
            raise InvalidPosition(
                f"position {since} is not from channel {channel.name!r} as this broker holds it "
                "(the memory broker forgets a channel's history on restart, or when it has to "
                "make room for other channels)"
            )
        if since.offset >= next_offset:
            raise InvalidPosition(f"position {since} is ahead of channel {channel.name!r}")
        oldest = _offset(entries[0]) if entries else next_offset
        if since.offset + 1 < oldest:
            shown = entries[0].position if entries else None
            raise PositionExpired(str(since), str(shown) if shown else None)
        missed = [entry for entry in entries if _offset(entry) > since.offset]
        for start in range(0, len(missed), 500):
            yield missed[start : start + 500]
            await trio.lowlevel.checkpoint()


def _offset(entry: Delivered) -> int:
    assert entry.position is not None, "the memory broker positions every message"
    return entry.position.offset
