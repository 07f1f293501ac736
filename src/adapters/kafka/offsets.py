"""Where one feed stands in Kafka: what its two sides (the consumer thread, trio) share.

The consumer thread learns partitions (which stream id is which partition, how many partitions a
topic has); trio learns what was handed on (the frontiers a resume starts from, the offsets to
commit). Only ``to commit`` is written by one side and read by the other while both run, so it
alone takes a lock; the other maps are written by one side and only read (one ``dict`` look-up,
atomic) by the other.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence

from kafka import TopicPartition

from ...domain import Channel, Position, TopicStrategy
from ...ports import Delivered
from .common import kafka_stream, partition_for


class FeedOffsets:
    """One feed's partitions, frontiers and offsets to commit (see the module doc)."""

    def __init__(self, strategy: TopicStrategy, default_partitions: int) -> None:
        self._strategy = strategy
        self._default_partitions = default_partitions
        self.cluster_id = ""
        """The cluster's id, set before the consumer thread starts (part of every stream id)."""
        self.existing: set[str] | None = None
        """Topics that existed when the feed opened (None: not looked up)."""
        self.start_at: dict[TopicPartition, int] = {}
        """End offsets of the existing topics' partitions when the feed opened."""
        self.streams: dict[str, TopicPartition] = {}
        """Stream id -> partition, for each partition the consumer thread has read from."""
        self.partitions: dict[str, int] = {}
        """Topic -> its number of partitions, as the consumer thread found them."""
        self._frontiers: dict[TopicPartition, int] = {}
        self._lock = threading.Lock()
        self._to_commit: dict[TopicPartition, int] = {}

    # -- The trio side -------------------------------------------------------------------------

    def advance(self, next_offsets: Mapping[TopicPartition, int]) -> None:
        """A batch was handed on: each partition's frontier is the offset before its next."""
        frontiers = self._frontiers
        for tp, offset in next_offsets.items():
            frontiers[tp] = offset - 1

    def handed(self, delivered: Sequence[Delivered]) -> dict[TopicPartition, int]:
        """The next offset of each partition after ``delivered`` (part of a batch)."""
        offsets: dict[TopicPartition, int] = {}
        for item in delivered:
            assert item.position is not None
            tp = self.streams[item.position.stream]
            offsets[tp] = max(offsets.get(tp, 0), item.position.offset + 1)
        return offsets

    def mark(self, offsets: Mapping[TopicPartition, int]) -> None:
        """Offsets the consumer thread is to commit before its next poll."""
        with self._lock:
            self._to_commit.update(offsets)

    def frontier(self, channel: Channel) -> Position:
        """The position of the last message of ``channel``'s partition handed on (offset -1
        before any)."""
        topic = self._strategy.topic_for(channel)
        partition = partition_for(channel, self.partitions.get(topic, self._default_partitions))
        offset = self._frontiers.get(TopicPartition(topic, partition), -1)
        return Position(kafka_stream(self.cluster_id, topic, partition), offset)

    # -- The consumer thread -------------------------------------------------------------------

    def take_marked(self) -> dict[TopicPartition, int]:
        """What trio marked since the last call, to commit now."""
        with self._lock:
            offsets, self._to_commit = self._to_commit, {}
        return offsets
