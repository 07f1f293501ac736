"""A feed's records turned into batches for trio, on the consumer thread: decoded, checked
against the topic that carried them, and split into batches of the feed's size.

A record is handed on only if its topic carries the channel its envelope names
(``MisplacedRecords``, ADR 0016); the others are dropped and counted. This is the feed's per
record cost: one envelope decode, one dict look-up and a comparison, one ``Delivered``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import attrs
from kafka import TopicPartition

from ...domain import Position, TopicStrategy
from ...ports import Delivered, FeedOptions
from .common import (
    ANY_KEY,
    REFUSED,
    KafkaDelivered,
    MisplacedRecords,
    UndecodableRecords,
    kafka_stream,
)
from .offsets import FeedOffsets


@attrs.frozen
class KafkaBatch:
    """Up to ``batch_size`` messages of one poll plus where each partition stands after them."""

    deliveries: list[Delivered]
    next_offsets: dict[TopicPartition, int]
    """Where partitions stand after this batch, what committing it commits: those it read from,
    or, for a poll's last batch, every assigned partition when the feed takes a snapshot
    (assignment changed, idle, 1 s)."""
    caught_up: bool
    lag: int | None = None
    epoch: int = 0
    """The feed's revocations when the batch was made (``FeedOffsets.take`` drops the records of
    partitions revoked since)."""


class FeedRecords:
    """Decodes and batches one feed's records; counts the records it had to drop."""

    def __init__(self, options: FeedOptions, strategy: TopicStrategy, offsets: FeedOffsets) -> None:
        self.options = options
        self._offsets = offsets
        self._wanted = (
            None if options.channels is None else {channel.name for channel in options.channels}
        )
        self.undecodable = UndecodableRecords()
        self.misplaced = MisplacedRecords(strategy)

    def split(
        self,
        deliveries: list[Delivered],
        next_offsets: dict[TopicPartition, int],
        caught_up: bool,
        lag: int | None,
        epoch: int = 0,
    ) -> Iterator[KafkaBatch]:
        """A poll's deliveries in batches of at most ``batch_size`` (one, maybe empty, at
        least). Each batch commits up to its own last delivery in each partition; the last
        one commits where the whole poll left the partitions."""
        size = self.options.batch_size
        streams = self._offsets.streams
        last = (len(deliveries) - 1) // size * size if deliveries else 0
        for start in range(0, last, size):
            batch = deliveries[start : start + size]
            offsets: dict[TopicPartition, int] = {}
            for delivered in batch:
                assert delivered.position is not None
                offsets[streams[delivered.position.stream]] = delivered.position.offset + 1
            yield KafkaBatch(batch, offsets, False, lag, epoch)
        yield KafkaBatch(deliveries[last:], next_offsets, caught_up, lag, epoch)

    def deliveries(self, records: dict[TopicPartition, list[Any]]) -> list[Delivered]:
        """A poll's records as deliveries. A feed of every channel (a gateway's) leaves the
        envelopes undecoded until someone wants them: most are for nobody on this node. Records
        whose topic does not carry the channel they name are dropped (and counted)."""
        deliveries: list[Delivered] = []
        wanted = self._wanted
        misplaced = self.misplaced
        undecodable = self.undecodable
        streams = self._offsets.streams
        cluster_id = self._offsets.cluster_id
        for tp, batch in records.items():
            topic = tp.topic
            stream = kafka_stream(cluster_id, topic, tp.partition)
            streams[stream] = tp
            where = f"{topic}/{tp.partition}"
            expected = misplaced.expected_keys(topic)
            # The topic is the authority: per record one look-up and a comparison; ``accepts``
            # only for a channel not seen in this topic yet, or a record that is refused.
            for record in batch:
                if wanted is None:
                    found = undecodable.envelope(record.value, where)
                    if found is None:
                        continue
                    name, envelope = found
                    key = expected.get(name, REFUSED)
                    if (
                        key is not ANY_KEY
                        and key != record.key
                        and not misplaced.accepts(topic, record.key, name)
                    ):
                        continue
                    position = Position(stream, record.offset)
                    deliveries.append(KafkaDelivered.undecoded(name, envelope, position))
                    continue
                message = undecodable.decode(record.value, where)
                if message is None or message.channel.name not in wanted:
                    continue
                name = message.channel.name
                key = expected.get(name, REFUSED)
                if (
                    key is not ANY_KEY
                    and key != record.key
                    and not misplaced.accepts(topic, record.key, name)
                ):
                    continue
                deliveries.append(Delivered(message, Position(stream, record.offset)))
        return deliveries
