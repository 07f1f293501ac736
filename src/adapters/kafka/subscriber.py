"""Consuming from Kafka: one consumer per feed, owned by a thread, handing batches to trio.

A feed is three parts, each in its module: the consumer thread (``feed_thread.FeedConsumer``:
polling, decoding, commits), the trio side (``KafkaFeed`` here: batches handed on, frontiers,
status), and what the two share (``offsets.FeedOffsets``). Offsets are committed on the thread,
before its next poll, and only for batches the trio side has reported as handed on:
at-least-once, never commit-before-deliver.

Groups: ``fanout`` gives each node its own stable group (``{group}.{node}``), so every gateway
sees every message and a restarted node resumes where it stopped; ``shared`` is the seed's one
group for all, which splits the partitions (worker-style processing). See ADR 0005.

A record is handed on only if its topic carries the channel its envelope names
(``MisplacedRecords``, ADR 0016); the others are dropped and counted in the feed's status. A feed
never creates a topic for a client: its consumer never asks the broker to auto-create one, and the
topics it creates up front are those of the channels an operator named (``tidings kafka consume``)
or the shared strategy's fixed set.
"""

from __future__ import annotations

import re
import threading
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import attrs
import trio
from kafka import TopicPartition

from ...domain import Channel, Position, SharedTopics, TopicStrategy
from ...domain.position import stream_id
from ...ports import Delivered, FeedOptions, FeedStatus
from .admin import KafkaAdmin
from .bridge import Handover
from .feed_thread import IN_FLIGHT, FeedConsumer
from .offsets import FeedOffsets
from .records import KafkaBatch
from .settings import KafkaClientConfig

__all__ = ["KafkaBatch", "KafkaFeed", "KafkaSubscriber"]


class KafkaFeed:
    """One open subscription (implements ``Feed``)."""

    def __init__(
        self,
        options: FeedOptions,
        *,
        client: KafkaClientConfig,
        admin: KafkaAdmin,
    ) -> None:
        self.options = options
        strategy = self._strategy = client.strategy
        self._admin = admin
        self._handover = Handover[KafkaBatch | BaseException](IN_FLIGHT)
        self._offsets = FeedOffsets(strategy, client.partitions)
        self._caught_up = False
        self._pending: KafkaBatch | None = None
        self._lag: int | None = None
        self.group_id = _group_id(options, strategy)
        self._consumer = FeedConsumer(
            options,
            group_id=self.group_id,
            topics=self._topics(),
            client=client,
            admin=admin,
            offsets=self._offsets,
            handover=self._handover,
        )
        self._thread = threading.Thread(
            target=self._consumer.run, name=f"tidings-kafka-feed-{self.group_id}", daemon=True
        )

    @property
    def last_error(self) -> str | None:
        """Why the consumer thread last failed to reach Kafka; None while it can."""
        return self._consumer.last_error

    # -- The trio side -----------------------------------------------------------------------

    async def start(self) -> None:
        self._offsets.cluster_id = await trio.to_thread.run_sync(self._admin.cluster_id)
        if self.options.start_at_end:
            await trio.to_thread.run_sync(self._note_start)
        topics = self._topics()
        if topics is not None:
            await trio.to_thread.run_sync(self._ensure_topics, topics)
        self._thread.start()

    def _topics(self) -> list[str] | None:
        """The topics this feed reads, when they are known up front (its channels' topics, or
        the shared strategy's); None when it reads every channel topic, existing or to come."""
        channels = self.options.channels
        if channels is not None:
            return sorted({self._strategy.topic_for(channel) for channel in channels})
        return self._strategy.fixed_topics()

    def _note_start(self) -> None:
        """Where this feed starts in the topics that exist now: their end offsets now, before
        any client can subscribe. Seeking to the end only once Kafka assigns the partitions
        (which can take seconds) would skip what was published in between."""
        pattern = re.compile(self._strategy.subscription_pattern())
        existing = {topic for topic in self._admin.topics() if pattern.match(topic)}
        self._offsets.existing = existing
        self._offsets.start_at = {
            TopicPartition(row.topic, row.partition): row.end
            for row in self._admin.offsets(sorted(existing))
        }

    def _ensure_topics(self, topics: list[str]) -> None:
        for topic in topics:
            self._admin.ensure_topic(topic)

    async def batches(self) -> AsyncIterator[Sequence[Delivered]]:
        """Each batch is in hand from when it is yielded until it is committed or the next one
        is asked for: a rebalance waits for it (ADR 0025), and drops the records of the
        partitions it takes away from batches not yet yielded."""
        offsets = self._offsets
        try:
            async for item in self._handover.items():
                if isinstance(item, BaseException):
                    raise item
                revoked = offsets.take(item.epoch)
                if revoked:
                    item = self._without(item, revoked)
                offsets.advance(item.next_offsets)
                self._caught_up = item.caught_up
                self._lag = item.lag
                self._pending = item
                yield item.deliveries
                offsets.release()
        finally:
            offsets.release()

    def _without(self, batch: KafkaBatch, revoked: frozenset[TopicPartition]) -> KafkaBatch:
        """``batch`` without what it holds of partitions revoked since it was made."""
        streams = self._offsets.streams
        kept = []
        for delivered in batch.deliveries:
            assert delivered.position is not None
            if streams[delivered.position.stream] not in revoked:
                kept.append(delivered)
        next_offsets = {tp: o for tp, o in batch.next_offsets.items() if tp not in revoked}
        return attrs.evolve(batch, deliveries=kept, next_offsets=next_offsets, caught_up=False)

    async def commit(self, handed: Sequence[Delivered] | None = None) -> None:
        """Mark handed-on messages; the thread commits them before its next poll."""
        pending = self._pending
        if pending is not None:
            if handed is None or len(handed) == len(pending.deliveries):
                self._offsets.mark(pending.next_offsets)
            else:
                self._offsets.mark(self._offsets.handed(handed))
        await trio.lowlevel.checkpoint()

    def caught_up(self) -> bool:
        return self._caught_up

    def status(self) -> FeedStatus:
        consumer = self._consumer
        return FeedStatus(
            consumer.connected and consumer.last_error is None,
            self._lag,
            consumer.last_error,
            misplaced=consumer.records.misplaced.count,
            undecodable=consumer.records.undecodable.count,
        )

    def frontier(self, channel: Channel) -> Position:
        return self._offsets.frontier(channel)

    async def close(self) -> None:
        self._offsets.release()  # the last batch will not be committed: no rebalance waits for it
        await self._handover.aclose()
        if self._thread.ident is not None:
            await trio.to_thread.run_sync(self._thread.join)


class KafkaSubscriber:
    """Implements ``Subscriber`` over Kafka: each feed gets its own consumer thread."""

    name = "kafka"

    def __init__(self, config: KafkaClientConfig) -> None:
        self._client = config

    @asynccontextmanager
    async def open_feed(self, options: FeedOptions) -> AsyncIterator[KafkaFeed]:
        admin = KafkaAdmin.for_config(self._client)
        feed = KafkaFeed(options, client=self._client, admin=admin)
        try:
            await feed.start()
            yield feed
        finally:
            with trio.CancelScope(shield=True):
                await feed.close()
                await trio.to_thread.run_sync(admin.close)

    def close(self) -> None:
        """Feeds close with their context; nothing is shared between them."""


def _group_id(options: FeedOptions, strategy: TopicStrategy) -> str:
    """The consumer group of a feed.

    With shared topics, a group that reads only some channels commits offsets past the other
    channels' records in the same partitions; another consumer of those channels in the same
    group would skip them. So a feed of a subset of channels on shared topics gets a group of
    its own, named after the subset: processes consuming the same channels still share it.
    """
    group = options.group_id()
    if options.channels is None or not isinstance(strategy, SharedTopics):
        return group
    names = sorted(channel.name for channel in options.channels)
    return f"{group}.{stream_id('channels', *names)}"
