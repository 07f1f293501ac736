"""The memory broker's history: each channel's latest messages, kept compact, counted as they cost.

A kept message is its encoded envelope alone (the ``bytes`` the message already made when it was
published), not the ``Message`` with its dicts and strings, which costs several times its JSON.
Replays, which are rare, decode the envelope again; deliveries, which are hot, never touch the
history. What an entry and a channel's log cost is what CPython takes for them, measured (see
``ENTRY_OVERHEAD`` and ``LOG_OVERHEAD``), so ``REALTIME_HISTORY_BYTES`` bounds the process's
memory, not a sum of string lengths. Which entries stay is ``tidings.domain.retention``'s rule.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Iterator, Sequence

from ...domain import Channel, Message, Position
from ...domain.errors import InvalidPosition, PositionExpired
from ...domain.position import stream_id
from ...domain.retention import Retention
from ...ports import Delivered

ENTRY_OVERHEAD = sys.getsizeof(b"") + 48
"""Bytes a kept message costs beyond its encoded envelope: the ``bytes`` object's header (33 on
64-bit CPython), the allocator's header and rounding (up to 24) and the log's slot for it (8,
plus its share of the log's blocks). Measured as RSS growth per kept envelope, it is 50 to 75
bytes for envelopes of 50 B to 4 kB and about 120 for 70 kB ones (0.2 %)."""

LOG_OVERHEAD = 1_400
"""Bytes a channel's log costs before its first message, its channel's name aside: the log
object, its empty deque (one block of 64 slots), its stream name and its entry in the logs'
ordered dict come to about 1,000 (tracemalloc, CPython 3.11), each of its entries in the
ranking heap (two at most, stale ones included) to about 100; the rest is room for the dict's
growth. tests/unit/test_memory_history.py checks that nothing allocated goes uncounted."""

REPLAY_BATCH = 500


def log_cost(channel: str) -> int:
    """What a channel's log costs before its first message, in bytes."""
    return LOG_OVERHEAD + sys.getsizeof(channel)


class MemoryHistory:
    """Positions for every published message, and the latest ones kept for resume.

    Not thread-safe: the broker calls it with its lock held. ``replayable`` copies what a
    replay needs under that lock; ``decoded`` then rebuilds the messages without it.
    """

    def __init__(self, *, size: int, channels: int, budget: int, epoch: str) -> None:
        self._epoch = epoch
        self._retention: Retention[bytes] = Retention(
            per_channel=size,
            channels=channels,
            budget=budget,
            entry_overhead=ENTRY_OVERHEAD,
            log_cost=log_cost,
            stream=self._name_stream,
        )
        self._keeps = size > 0

    @property
    def held(self) -> int:
        """Bytes the history holds, by its own measure (never over the budget)."""
        return self._retention.held

    def _name_stream(self, channel: str, generation: int) -> str:
        return stream_id("memory", self._epoch, channel, generation)

    def record(self, message: Message) -> Position:
        """Give ``message`` the next position of its channel, and keep it if the bounds allow."""
        stream, offset = self._retention.append(
            message.channel.name, message.to_bytes() if self._keeps else b""
        )
        return Position(stream, offset)

    def stream_of(self, channel: str) -> str:
        return self._retention.stream_of(channel)

    def last(self, channel: str) -> Position:
        """The position of the channel's latest message (offset -1 before its first)."""
        log = self._retention.log(channel)
        if log is None:
            return Position(self._retention.stream_of(channel), -1)
        return Position(log.stream, log.next_offset - 1)

    def replayable(self, channel: Channel, since: Position) -> tuple[str, int, list[bytes]]:
        """The stream, first offset and envelopes of what followed ``since``.

        Raises ``InvalidPosition`` when ``since`` is not a position of the channel's log (another
        broker run, or a log dropped to make room for others) or is ahead of it, and
        ``PositionExpired`` when what followed it is no longer kept.
        """
        log = self._retention.log(channel.name)
        stream = log.stream if log is not None else self._retention.stream_of(channel.name)
        next_offset = log.next_offset if log is not None else 0
        if since.stream != stream:
            raise InvalidPosition(
                f"position {since} is not from channel {channel.name!r} as this broker holds it "
                "(the memory broker forgets a channel's history on restart, or when it has to "
                "make room for other channels)"
            )
        if since.offset >= next_offset:
            raise InvalidPosition(f"position {since} is ahead of channel {channel.name!r}")
        if log is None:  # nothing was ever published: a client resuming from "before the first"
            return stream, since.offset + 1, []
        first = log.first_offset
        if since.offset + 1 < first:
            raise PositionExpired(str(since), str(Position(stream, first - 1)))
        missed = list(itertools.islice(log.entries, since.offset + 1 - first, None))
        return stream, since.offset + 1, missed

    @staticmethod
    def decoded(stream: str, first: int, envelopes: Sequence[bytes]) -> Iterator[list[Delivered]]:
        """The kept envelopes as deliveries with their positions, in batches."""
        for start in range(0, len(envelopes), REPLAY_BATCH):
            yield [
                Delivered(Message.from_json(envelope), Position(stream, first + start + index))
                for index, envelope in enumerate(envelopes[start : start + REPLAY_BATCH])
            ]
