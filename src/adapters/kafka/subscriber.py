"""Consuming from Kafka: one consumer per feed, owned by a thread, handing batches to trio.

kafka-python consumers are not thread-safe, so each feed's consumer lives and dies on the
feed's own thread. The thread polls, decodes, and hands each batch to trio through a channel of
size one, so a slow consumer on the trio side holds the thread back (backpressure) instead of
buffering without bound. Offsets are committed on the thread, before its next poll, and only
for batches the trio side has reported as handed on: at-least-once, never commit-before-deliver.

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

import logging
import re
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError
from kafka.structs import OffsetAndMetadata

from ...config import Settings
from ...domain import Channel, Position, SharedTopics, TopicStrategy
from ...domain.errors import BrokerUnavailable
from ...domain.position import stream_id
from ...ports import Delivered, FeedOptions, FeedStatus
from .admin import KafkaAdmin
from .common import (
    ANY_KEY,
    REFUSED,
    MisplacedRecords,
    UndecodableRecords,
    kafka_stream,
    partition_for,
)
from .settings import consumer_config, security_settings

log = logging.getLogger("tidings.kafka.subscriber")

IN_FLIGHT = 2
"""Batches the consumer thread may hand to trio before trio has taken the first of them."""

POLL_BATCHES = 4
"""A poll reads up to this many batches. kafka-python makes two round trips to its network
thread per poll, whatever its size, so a backlog is read in fewer, larger polls and handed on
in batches of ``batch_size`` (200,000 messages, four runs each: 66-76k -> 80-81k msg/s;
raw kafka-python, 500 a poll, 78-81k)."""

PROBE_INTERVAL = 5.0
"""Seconds between liveness probes of the cluster (for health checks)."""

SNAPSHOT_INTERVAL = 1.0
"""Seconds between full snapshots of every assigned partition's position and lag while busy."""

DISCOVERY_INTERVAL_MS = 2_000
"""How often a feed reading every per-channel topic looks for new ones (metadata refresh)."""


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


class KafkaFeed:
    """One open subscription (implements ``Feed``)."""

    def __init__(
        self,
        options: FeedOptions,
        *,
        brokers: list[str],
        strategy: TopicStrategy,
        admin: KafkaAdmin,
        consumer_config: dict[str, Any],
        default_partitions: int,
    ) -> None:
        self.options = options
        self._brokers = brokers
        self._strategy = strategy
        self._admin = admin
        self._config = consumer_config
        self._default_partitions = default_partitions
        self._wanted = (
            None if options.channels is None else {channel.name for channel in options.channels}
        )
        self._send, self._receive = trio.open_memory_channel[KafkaBatch | BaseException](IN_FLIGHT)
        self._in_flight = threading.Semaphore(IN_FLIGHT)
        """Batches handed to trio and not yet taken: the thread polls ahead at most this far."""
        self._token = trio.lowlevel.current_trio_token()
        self._stop = threading.Event()
        self._commit_lock = threading.Lock()
        self._to_commit: dict[TopicPartition, int] = {}
        self._frontiers: dict[TopicPartition, int] = {}
        self._partitions: dict[str, int] = {}
        self._streams: dict[str, TopicPartition] = {}
        self._existing: set[str] | None = None
        self._start_at: dict[TopicPartition, int] = {}
        """End offsets of the existing topics' partitions when the feed opened."""
        self._caught_up = False
        self._cluster_id = ""
        self._pending: KafkaBatch | None = None
        self._lag: int | None = None
        self._connected = False
        self.last_error: str | None = None
        self._undecodable = UndecodableRecords()
        self._misplaced = MisplacedRecords(strategy)
        self.group_id = _group_id(options, strategy)
        self._thread = threading.Thread(
            target=self._run, name=f"tidings-kafka-feed-{self.group_id}", daemon=True
        )

    # -- The trio side -----------------------------------------------------------------------

    async def start(self) -> None:
        self._cluster_id = await trio.to_thread.run_sync(self._admin.cluster_id)
        if self.options.start_at_end:
            await trio.to_thread.run_sync(self._note_start)
        topics = self._topics()
        if topics is not None:
            await trio.to_thread.run_sync(self._ensure_topics, topics)
        self._thread.start()

    def _topics(self) -> list[str] | None:
        """The topics this feed reads, when they are known up front (its channels' topics, or
        the shared strategy's); None when it reads every channel topic, existing or to come."""
        if self._wanted is not None:
            return sorted({self._strategy.topic_for(Channel(name)) for name in self._wanted})
        return self._strategy.fixed_topics()

    def _note_start(self) -> None:
        """Where this feed starts in the topics that exist now: their end offsets now, before
        any client can subscribe. Seeking to the end only once Kafka assigns the partitions
        (which can take seconds) would skip what was published in between."""
        pattern = re.compile(self._strategy.subscription_pattern())
        self._existing = {topic for topic in self._admin.topics() if pattern.match(topic)}
        self._start_at = {
            TopicPartition(row.topic, row.partition): row.end
            for row in self._admin.offsets(sorted(self._existing))
        }

    def _ensure_topics(self, topics: list[str]) -> None:
        for topic in topics:
            self._admin.ensure_topic(topic)

    async def batches(self) -> AsyncIterator[Sequence[Delivered]]:
        async for item in self._receive:
            self._in_flight.release()
            if isinstance(item, BaseException):
                raise item
            for tp, offset in item.next_offsets.items():
                self._frontiers[tp] = offset - 1
            self._caught_up = item.caught_up
            self._lag = item.lag
            self._pending = item
            yield item.deliveries

    async def commit(self, handed: Sequence[Delivered] | None = None) -> None:
        """Mark handed-on messages; the thread commits them before its next poll."""
        pending = self._pending
        if pending is not None:
            if handed is None or len(handed) == len(pending.deliveries):
                offsets = pending.next_offsets
            else:
                offsets = {}
                for delivered in handed:
                    assert delivered.position is not None
                    tp = self._streams[delivered.position.stream]
                    offsets[tp] = max(offsets.get(tp, 0), delivered.position.offset + 1)
            with self._commit_lock:
                self._to_commit.update(offsets)
        await trio.lowlevel.checkpoint()

    def caught_up(self) -> bool:
        return self._caught_up

    def status(self) -> FeedStatus:
        return FeedStatus(
            self._connected and self.last_error is None,
            self._lag,
            self.last_error,
            misplaced=self._misplaced.count,
            undecodable=self._undecodable.count,
        )

    def frontier(self, channel: Channel) -> Position:
        topic = self._strategy.topic_for(channel)
        partitions = self._partitions.get(topic, self._default_partitions)
        partition = partition_for(channel, partitions)
        tp = TopicPartition(topic, partition)
        return Position(
            kafka_stream(self._cluster_id, topic, partition), self._frontiers.get(tp, -1)
        )

    async def close(self) -> None:
        self._stop.set()
        await self._receive.aclose()
        if self._thread.ident is not None:
            await trio.to_thread.run_sync(self._thread.join)

    # -- The consumer thread -----------------------------------------------------------------

    def _hand_over(self, item: KafkaBatch | BaseException) -> bool:
        """Queue an item for trio without waiting for trio to run (the thread goes on polling),
        unless ``IN_FLIGHT`` items are unread; False once the feed is closed."""
        while not self._in_flight.acquire(timeout=0.2):
            if self._stop.is_set():
                return False
        try:
            self._token.run_sync_soon(self._queue_item, item)
        except trio.RunFinishedError:
            return False
        return not self._stop.is_set()

    def _queue_item(self, item: KafkaBatch | BaseException) -> None:
        """On the trio thread: there is room (the semaphore says so), unless the feed closed."""
        try:
            self._send.send_nowait(item)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._stop.set()

    def _run(self) -> None:
        """Consume until closed; ride out broker outages by reconnecting with backoff."""
        backoff = 0.5
        while not self._stop.is_set():
            consumer: KafkaConsumer | None = None
            try:
                consumer = self._open_consumer()
                self._connected = True
                self.last_error = None
                backoff = 0.5
                self._poll_loop(consumer)
                return
            except (BrokerUnavailable, KafkaError, OSError) as exc:
                self._connected = False
                self.last_error = str(exc) or type(exc).__name__
                log.warning(
                    "Kafka consumer failed (%s); reconnecting in %.1fs", self.last_error, backoff
                )
            finally:
                if consumer is not None:
                    self._commit_handed(consumer)
                    try:
                        consumer.close(autocommit=False)
                    except (KafkaError, OSError) as exc:
                        log.warning("consumer did not close cleanly: %s", exc)
            self._stop.wait(backoff)
            backoff = min(backoff * 2, 30.0)

    def _open_consumer(self) -> KafkaConsumer:
        options = self.options
        config = dict(self._config)
        topics = self._topics()
        if topics is None:
            config.setdefault("metadata_max_age_ms", DISCOVERY_INTERVAL_MS)
        # "none": a partition without a committed offset raises, and _place decides where it
        # starts, on this thread (kafka-python 3 runs rebalance callbacks on its IO thread,
        # where the look-ups this needs may not block).
        consumer = KafkaConsumer(
            bootstrap_servers=self._brokers,
            group_id=self.group_id,
            enable_auto_commit=False,
            auto_offset_reset="none",
            max_poll_records=options.batch_size * POLL_BATCHES,
            client_id=f"tidings-{self.group_id}",
            **config,
        )
        if options.start_at_end and self._existing is None:
            self._existing = set(self._admin.topics())
        if topics is None:
            # Pattern subscriptions fetch the whole cluster's metadata at every refresh: only
            # for per-channel topics, which appear with channels.
            consumer.subscribe(pattern=self._strategy.subscription_pattern())
        else:
            consumer.subscribe(topics=topics)
        return consumer

    def _place(self, consumer: KafkaConsumer, partitions: set[TopicPartition]) -> None:
        """Where partitions without a usable committed offset start.

        Feeds that start at the end (gateways) skip the past of topics that existed when they
        first opened (nobody was connected to want it); topics created later start at their
        beginning, so the first messages of a new channel are not lost. Other feeds start at the
        beginning, and so does any partition whose committed offset fell out of retention.
        """
        existing = self._existing or set()
        to_end = [tp for tp in partitions if self.options.start_at_end and tp.topic in existing]
        to_start = [tp for tp in partitions if tp not in to_end]
        for tp in to_end:
            if tp in self._start_at:
                consumer.seek(tp, self._start_at[tp])
            else:
                consumer.seek_to_end(tp)  # a partition added since the feed opened
        if to_start:
            consumer.seek_to_beginning(*to_start)

    def _probe(self) -> None:
        """Ask the cluster something: kafka-python reconnects silently, so an idle feed would
        never notice the broker is gone. Health checks read the answer from ``last_error``."""
        try:
            self._admin.ping()
        except BrokerUnavailable as exc:
            if self.last_error is None:
                log.warning("Kafka unreachable: %s", exc)
            self.last_error = str(exc)
        else:
            if self.last_error is not None:
                log.warning("Kafka reachable again")
            self.last_error = None

    def _poll_loop(self, consumer: KafkaConsumer) -> None:
        timeout_ms = max(1, int(self.options.timeout * 1000))
        max_records = self.options.batch_size * POLL_BATCHES
        next_probe = time.monotonic() + PROBE_INTERVAL
        assigned: set[TopicPartition] | None = None
        """The assignment of the last full snapshot of positions (None: take one next poll)."""
        next_snapshot = 0.0
        lag: int | None = None
        while not self._stop.is_set():
            if time.monotonic() >= next_probe:
                self._probe()
                next_probe = time.monotonic() + PROBE_INTERVAL
            self._commit_handed(consumer, wait=False)
            try:
                records = consumer.poll(timeout_ms=timeout_ms, max_records=max_records)
            except NoOffsetForPartitionError as exc:
                self._place(consumer, set(exc.args[0]))
                assigned = None
                continue
            except OffsetOutOfRangeError as exc:
                gone = set(exc.args[0]) if exc.args and isinstance(exc.args[0], dict) else set()
                log.warning("committed offsets out of retention for %s; from the start", gone)
                consumer.seek_to_beginning(*gone)
                assigned = None
                continue
            deliveries = self._deliveries(records)
            assignment = consumer.assignment()
            now = time.monotonic()
            if records and assignment == assigned and now < next_snapshot:
                # Busy and nothing moved: only the partitions read from changed, and the cost
                # of a poll stays independent of how many partitions (channel topics) there are.
                next_offsets = {tp: consumer.position(tp) for tp in records}
                caught_up = False  # and the lag of the last snapshot stands
            else:
                snapshot = self._snapshot(consumer, assignment, idle=not records)
                next_offsets, caught_up, lag = snapshot
                assigned, next_snapshot = assignment, now + SNAPSHOT_INTERVAL
            for batch in self._split(deliveries, next_offsets, caught_up, lag):
                if not self._hand_over(batch):
                    return

    def _split(
        self,
        deliveries: list[Delivered],
        next_offsets: dict[TopicPartition, int],
        caught_up: bool,
        lag: int | None,
    ) -> Iterator[KafkaBatch]:
        """A poll's deliveries in batches of at most ``batch_size`` (one, maybe empty, at
        least). Each batch commits up to its own last delivery in each partition; the last
        one commits where the whole poll left the partitions."""
        size = self.options.batch_size
        last = (len(deliveries) - 1) // size * size if deliveries else 0
        for start in range(0, last, size):
            batch = deliveries[start : start + size]
            offsets: dict[TopicPartition, int] = {}
            for delivered in batch:
                assert delivered.position is not None
                offsets[self._streams[delivered.position.stream]] = delivered.position.offset + 1
            yield KafkaBatch(batch, offsets, False, lag)
        yield KafkaBatch(deliveries[last:], next_offsets, caught_up, lag)

    def _deliveries(self, records: dict[TopicPartition, list[Any]]) -> list[Delivered]:
        """A poll's records as deliveries. A feed of every channel (a gateway's) leaves the
        envelopes undecoded until someone wants them: most are for nobody on this node. Records
        whose topic does not carry the channel they name are dropped (and counted)."""
        deliveries: list[Delivered] = []
        wanted = self._wanted
        misplaced = self._misplaced
        for tp, batch in records.items():
            topic = tp.topic
            stream = kafka_stream(self._cluster_id, topic, tp.partition)
            self._streams[stream] = tp
            where = f"{topic}/{tp.partition}"
            expected = misplaced.expected_keys(topic)
            # The topic is the authority: per record one look-up and a comparison; ``accepts``
            # only for a channel not seen in this topic yet, or a record that is refused.
            for record in batch:
                if wanted is None:
                    found = self._undecodable.envelope(record.value, where)
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
                    deliveries.append(Delivered.undecoded(name, envelope, position))
                    continue
                message = self._undecodable.decode(record.value, where)
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

    def _snapshot(
        self, consumer: KafkaConsumer, assignment: set[TopicPartition], *, idle: bool
    ) -> tuple[dict[TopicPartition, int], bool, int | None]:
        """Every assigned partition's position, whether all are read to the end, and the lag."""
        for topic in {tp.topic for tp in assignment} - set(self._partitions):
            found = consumer.partitions_for_topic(topic)
            if found:
                self._partitions[topic] = len(found)
        positions = {tp: consumer.position(tp) for tp in assignment}
        caught_up = idle and bool(assignment) and self._at_end(consumer, positions)
        return positions, caught_up, _lag(consumer, positions)

    def _at_end(self, consumer: KafkaConsumer, positions: dict[TopicPartition, int]) -> bool:
        """Whether every partition is read to its end (high-water marks, else a request)."""
        ends = {tp: consumer.highwater(tp) for tp in positions}
        if any(end is None for end in ends.values()):
            ends = consumer.end_offsets(list(positions))
        return all(positions[tp] >= ends[tp] for tp in positions)

    def _commit_handed(self, consumer: KafkaConsumer, *, wait: bool = True) -> None:
        """Commit what trio has handed on. In the poll loop without waiting for the answer
        (the next commit supersedes a lost one); when the consumer closes, waiting for it."""
        with self._commit_lock:
            offsets, self._to_commit = self._to_commit, {}
        if not offsets:
            return
        assigned = consumer.assignment()
        to_commit = {
            tp: OffsetAndMetadata(offset, "", -1)
            for tp, offset in offsets.items()
            if tp in assigned
        }
        if not to_commit:
            return
        if not wait:
            consumer.commit_async(to_commit, callback=_log_failed_commit)
            return
        try:
            consumer.commit(to_commit)
        except KafkaError as exc:
            _log_failed_commit(to_commit, exc)


class KafkaSubscriber:
    """Implements ``Subscriber`` over Kafka: each feed gets its own consumer thread."""

    name = "kafka"

    def __init__(
        self,
        brokers: list[str],
        strategy: TopicStrategy,
        consumer_config: dict[str, Any],
        *,
        partitions: int,
        replication_factor: int,
        timeout: float,
    ) -> None:
        self._brokers = brokers
        self._strategy = strategy
        self._config = consumer_config
        self._partitions = partitions
        self._replication = replication_factor
        self._timeout = timeout

    @classmethod
    def from_settings(cls, settings: Settings) -> KafkaSubscriber:
        return cls(
            settings.broker_list,
            settings.topic_strategy(),
            consumer_config(settings),
            partitions=settings.kafka_topic_partitions,
            replication_factor=settings.kafka_replication_factor,
            timeout=settings.kafka_timeout,
        )

    def _admin(self) -> KafkaAdmin:
        return KafkaAdmin(
            self._brokers,
            partitions=self._partitions,
            replication_factor=self._replication,
            timeout=self._timeout,
            client_settings=security_settings(self._config),
        )

    @asynccontextmanager
    async def open_feed(self, options: FeedOptions) -> AsyncIterator[KafkaFeed]:
        admin = self._admin()
        feed = KafkaFeed(
            options,
            brokers=self._brokers,
            strategy=self._strategy,
            admin=admin,
            consumer_config=self._config,
            default_partitions=self._partitions,
        )
        try:
            await feed.start()
            yield feed
        finally:
            with trio.CancelScope(shield=True):
                await feed.close()
                await trio.to_thread.run_sync(admin.close)

    def close(self) -> None:
        """Feeds close with their context; nothing is shared between them."""


def _log_failed_commit(offsets: dict[TopicPartition, OffsetAndMetadata], result: object) -> None:
    if isinstance(result, BaseException):
        # The messages were handed on; a failed commit only means they may come again.
        log.warning("commit failed (messages may be redelivered): %s", result)


def _lag(consumer: KafkaConsumer, positions: dict[TopicPartition, int]) -> int | None:
    """Messages behind the high-water marks the last fetches reported; None before any fetch."""
    total = 0
    for tp, position in positions.items():
        end = consumer.highwater(tp)
        if end is None:
            return None
        total += max(0, end - position)
    return total


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
