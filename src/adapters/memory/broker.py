"""The embedded broker: publish and subscribe inside one process, with a short history.

It is a product feature for single-process deployments and development, not a stand-in for
Kafka. Semantics, so users can rely on them:

* Every open feed receives each message published after it opened (fan-out); feeds opened in
  ``shared`` mode with the same group split the channels between them, one channel always going
  to the same member so its order holds.
* Each channel keeps its last ``history_size`` messages with positions, for resume, within two
  bounds on the whole: ``history_channels`` channels (past it the least recently used channel's
  history goes) and ``history_bytes``, what the kept messages really cost in memory (past it the
  channel holding the most gives up its oldest message, so one channel's flood does not push out
  the others' history). Resuming from a message that is gone gets 410, as positions from before
  a restart do (see ``history.py`` and ``tidings.domain.retention``).
* Each feed's queue holds at most ``queue_size`` messages. A publish that would overflow any
  target feed's queue is refused whole with ``BrokerOverloaded``: no feed gets a message another
  misses, nothing is dropped silently, memory stays bounded.

``publish`` is thread-safe and never blocks; feeds are consumed from trio.

A broadcast published while no feed is open reaches nobody: no gateway serves in this process
(a gateway opens its feed before it takes connections). That is the mistake of a web app that
publishes on the memory broker while its gateway runs in another process, so the first such
broadcast logs a WARNING saying what to set instead (ADR 0024). A log record rather than a
``warnings`` warning: it is a deployment setting, not code to change, it reaches the
application's logs where its operators look, and a user's test suite run with ``-W error``
does not fail on it.
"""

from __future__ import annotations

import logging
import threading
import uuid
import zlib
from collections import deque
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import trio

from ...application.acknowledgement import Acknowledgement
from ...domain import Channel, Message, Position
from ...domain.errors import BrokerOverloaded, BrokerUnavailable
from ...ports import Delivered, FeedOptions, FeedStatus, GroupMode
from .. import forks
from .history import MemoryHistory

log = logging.getLogger("tidings.memory")

UNREAD = (
    "REALTIME_BROKER=memory: this message stays in this process; no gateway serves here. "
    "To reach a gateway running elsewhere, set REALTIME_BROKER=gateway and "
    "REALTIME_GATEWAY_URL=http://HOST:PORT (or kafka)"
)
"""Logged once per broker, on the first broadcast published while no feed is open."""


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
        self._thread = threading.get_ident()
        """The thread trio runs in: a publish from there (an HTTP request, a client's event)
        wakes the feed directly, without the cross-thread wake-up ``run_sync_soon`` makes."""
        self._arrived = trio.Event()
        self._wake_pending = False

    def wants(self, channel: str) -> bool:
        return self._channels is None or channel in self._channels

    def has_room(self) -> bool:
        return len(self._queue) < self._queue_size

    def push(self, delivered: Delivered) -> None:
        """Called with the broker's lock held, from any thread."""
        self._queue.append(delivered)
        if threading.get_ident() == self._thread:
            self._arrived.set()
        elif not self._wake_pending:
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
        self._history = MemoryHistory(
            size=history_size,
            channels=history_channels,
            budget=history_bytes,
            epoch=uuid.uuid4().hex,
        )
        self._queue_size = queue_size
        self._feeds: list[MemoryFeed] = []
        self._closed = False
        self._warned = False
        forks.renew_after_fork(self)

    def renew_after_fork(self) -> None:
        """In a forked child: a lock of its own (a thread of the parent may have held this one
        at the fork, and is gone), and no subscribers: those were the parent's gateway's, which
        does not run here. What the child publishes stays in the child (it warns, once)."""
        self._lock = threading.Lock()
        self._feeds = []
        self._warned = False

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
            position = self._history.record(message)
            delivered = Delivered(message, position)
            for feed in feeds:
                feed.push(delivered)
            unread = not self._feeds and not self._warned
            if unread:
                self._warned = True
        if unread:
            log.warning(UNREAD)
        return Acknowledgement.acknowledged(message, position)

    @property
    def history_held_bytes(self) -> int:
        """Bytes the history holds now, as it counts them against ``history_bytes``."""
        with self._lock:
            return self._history.held

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
            return self._history.last(channel.name)

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
            return self._history.stream_of(channel.name)

    async def replay(self, channel: Channel, since: Position) -> AsyncIterator[Sequence[Delivered]]:
        with self._lock:
            stream, first, missed = self._history.replayable(channel, since)
        for batch in MemoryHistory.decoded(stream, first, missed):
            yield batch
            await trio.lowlevel.checkpoint()


def _offset(entry: Delivered) -> int:
    assert entry.position is not None, "the memory broker positions every message"
    return entry.position.offset
