"""Where one feed stands in Kafka: what its two sides (the consumer thread, trio) share.

The consumer thread learns partitions (which stream id is which partition, how many partitions a
topic has); trio learns what was handed on (the frontiers a resume starts from, the offsets to
commit). Only ``to commit`` and the revocation state are written by one side and read by the other
while both run, so they alone take a lock; the other maps are written by one side and only read
(one ``dict`` look-up, atomic) by the other.

Revocations (ADR 0025): when a rebalance takes partitions away, kafka-python calls the feed's
listener on its IO thread, inside the consumer thread's ``poll``. ``revoke`` then fences the
partitions (trio drops their records from every batch made before the fence: they were read but
never written), waits for the batch trio has in hand to be written and marked, and gives back
what to commit for them and where each was written up to. So what was printed is committed
before another member reads the partitions, and nothing unprinted is.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Mapping, Sequence

import attrs
from kafka import TopicPartition

from ...domain import Channel, Position, TopicStrategy
from ...ports import Delivered
from .common import kafka_stream, partition_for


@attrs.frozen
class Revoked:
    """What ``FeedOffsets.revoke`` found for the partitions a rebalance takes away."""

    written: dict[TopicPartition, int]
    """Where each partition is written up to (its next offset to write): what to commit before
    it goes, whatever earlier commits were lost, and where it resumes if the same rebalance gives
    it back (the records after it were read, not written)."""
    in_time: bool
    """Whether the batch in hand was written within the wait (if not, its records of these
    partitions may be printed again by their next owner)."""


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
        self._changed = threading.Condition(self._lock)
        self._to_commit: dict[TopicPartition, int] = {}
        self.epoch = 0
        """Revocations so far; the consumer thread stamps each batch with it."""
        self._fences: list[tuple[int, frozenset[TopicPartition]]] = []
        """(epoch, partitions) of each revocation that a batch still queued for trio may predate."""
        self._in_hand = False
        """Whether trio holds a batch it has not yet marked or let go of."""
        self._written: dict[TopicPartition, int] = {}
        """Per partition handed on, the next offset to write (first handed, then marked)."""
        self._sent: dict[TopicPartition, int] = {}
        """Per partition, the last offset taken to be committed."""

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
        """Offsets the consumer thread is to commit before its next poll: the batch in hand is
        written."""
        with self._lock:
            self._to_commit.update(offsets)
            self._written.update(offsets)
            self._in_hand = False
            self._changed.notify_all()

    def take(self, epoch: int) -> frozenset[TopicPartition]:
        """Trio takes a batch the consumer thread made at ``epoch``; it is in hand until marked or
        released. Returns the partitions revoked since it was made: their records are dropped."""
        with self._lock:
            self._in_hand = True
            fences = self._fences
            while fences and fences[0][0] <= epoch:
                del fences[0]  # later batches are later still: they never predate these
            if not fences:
                return frozenset()
            return frozenset().union(*(partitions for _, partitions in fences))

    def release(self) -> None:
        """Trio is done with the batch in hand (it wrote nothing of it, or stopped)."""
        with self._lock:
            self._in_hand = False
            self._changed.notify_all()

    def frontier(self, channel: Channel) -> Position:
        """The position of the last message of ``channel``'s partition handed on (offset -1
        before any)."""
        topic = self._strategy.topic_for(channel)
        partition = partition_for(channel, self.partitions.get(topic, self._default_partitions))
        offset = self._frontiers.get(TopicPartition(topic, partition), -1)
        return Position(kafka_stream(self.cluster_id, topic, partition), offset)

    # -- The consumer thread -------------------------------------------------------------------

    def handing(
        self, deliveries: Sequence[Delivered], next_offsets: Mapping[TopicPartition, int]
    ) -> None:
        """Before a batch goes to trio: a partition's first batch sets where it is written up to
        (its first record's offset, or where it stands with none), until trio marks more."""
        written = self._written
        missing = [tp for tp in next_offsets if tp not in written]
        if not missing:
            return
        first: dict[TopicPartition, int] = {}
        streams = self.streams
        for item in deliveries:
            assert item.position is not None
            first.setdefault(streams[item.position.stream], item.position.offset)
        with self._lock:
            for tp in missing:
                written.setdefault(tp, first.get(tp, next_offsets[tp]))

    def revoke(self, partitions: Iterable[TopicPartition], wait: float) -> Revoked:
        """Fence ``partitions``, wait up to ``wait`` seconds for the batch in hand, and say what
        to commit for them (see the module doc). Called on kafka-python's IO thread."""
        gone = frozenset(partitions)
        with self._lock:
            self.epoch += 1
            self._fences.append((self.epoch, gone))
            in_time = self._changed.wait_for(lambda: not self._in_hand, timeout=wait)
            for tp in gone:
                self._to_commit.pop(tp, None)
            written = {tp: self._written.pop(tp) for tp in gone if tp in self._written}
        return Revoked(written, in_time)

    def written(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        """Where each of ``partitions`` is written up to, for the commit that closes a consumer:
        all of it again, so a commit lost on the way is made good."""
        with self._lock:
            return {tp: self._written[tp] for tp in partitions if tp in self._written}

    def retry(self, offsets: Mapping[TopicPartition, int]) -> None:
        """A commit of ``offsets`` failed: queue each again unless a later one was marked or
        sent since (committing it after that one would move the group back)."""
        with self._lock:
            for tp, offset in offsets.items():
                if tp not in self._to_commit and offset >= self._sent.get(tp, -1):
                    self._to_commit[tp] = offset

    def take_marked(self) -> dict[TopicPartition, int]:
        """What trio marked since the last call, to commit now."""
        with self._lock:
            offsets, self._to_commit = self._to_commit, {}
            self._sent.update(offsets)
        return offsets
