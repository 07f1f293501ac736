"""A feed's consumer thread: poll Kafka, decode, split into batches, hand them to trio, commit.

kafka-python consumers are not thread-safe, so each feed's consumer lives and dies on this
thread. It polls, decodes (``records.FeedRecords``), and hands each batch to trio through a
``Handover`` of ``IN_FLIGHT`` batches, so a slow consumer on the trio side holds the thread back
(backpressure) instead of buffering without bound. Offsets are committed here, before the next
poll, and only those trio has marked as handed on (``FeedOffsets``): at-least-once, never
commit-before-deliver. A broker outage is ridden out by ``reconnecting`` with a fresh consumer.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError
from kafka.structs import OffsetAndMetadata

from ...domain.errors import BrokerUnavailable
from ...ports import FeedOptions
from .admin import KafkaAdmin
from .bridge import Handover, reconnecting
from .offsets import FeedOffsets
from .rebalance import CommitOnRevoke, partition_assignor
from .records import FeedRecords, KafkaBatch
from .settings import KafkaClientConfig

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


class FeedConsumer:
    """The thread side of one feed (see the module doc); ``run`` is the thread's body."""

    def __init__(
        self,
        options: FeedOptions,
        *,
        group_id: str,
        topics: list[str] | None,
        client: KafkaClientConfig,
        admin: KafkaAdmin,
        offsets: FeedOffsets,
        handover: Handover[KafkaBatch | BaseException],
    ) -> None:
        """``topics``: those the feed reads, or None for every channel topic of ``strategy``,
        existing or to come."""
        self.options = options
        self.group_id = group_id
        self._topics = topics
        self._client = client
        self._strategy = client.strategy
        self._admin = admin
        self._offsets = offsets
        self._handover = handover
        self._stop = handover.closed
        """Set when the feed closes (or trio stops reading): the thread stops."""
        self.connected = False
        self.last_error: str | None = None
        self.records = FeedRecords(options, client.strategy, offsets)
        """How records become batches, and how many were dropped."""
        self._committing = False
        """Whether a ``commit_async`` awaits its answer."""

    def run(self) -> None:
        """Consume until closed; ride out broker outages by reconnecting with backoff."""
        reconnecting(
            self._session,
            stop=self._stop,
            errors=(BrokerUnavailable, KafkaError, OSError),
            log=log,
            what="Kafka consumer",
            on_error=self._failed,
        )

    def _failed(self, exc: BaseException) -> None:
        self.connected = False
        self.last_error = str(exc) or type(exc).__name__

    def _session(self, connected: Callable[[], None]) -> None:
        """One consumer's life: open, poll until closed, commit what was handed on, close."""
        consumer: KafkaConsumer | None = None
        try:
            consumer = self._open_consumer()
            self._committing = False
            self.connected = True
            self.last_error = None
            connected()
            self._poll_loop(consumer)
        finally:
            if consumer is not None:
                self._commit_written(consumer)
                try:
                    consumer.close(autocommit=False)
                except (KafkaError, OSError) as exc:
                    log.warning("consumer did not close cleanly: %s", exc)

    def _open_consumer(self) -> KafkaConsumer:
        options = self.options
        topics = self._topics
        fixed: dict[str, Any] = {}
        if topics is None and "metadata_max_age_ms" not in self._client.consumer_settings:
            fixed["metadata_max_age_ms"] = DISCOVERY_INTERVAL_MS
        # "none": a partition without a committed offset raises, and _place decides where it
        # starts, on this thread (kafka-python 3 runs rebalance callbacks on its IO thread,
        # where the look-ups this needs may not block).
        config = self._client.consumer(
            f"tidings-{self.group_id}",
            group_id=self.group_id,
            auto_offset_reset="none",
            max_poll_records=options.batch_size * POLL_BATCHES,
            partition_assignment_strategy=[partition_assignor(self._client.assignor)],
            **fixed,
        )
        consumer = KafkaConsumer(**config)
        if options.start_at_end and self._offsets.existing is None:
            self._offsets.existing = set(self._admin.topics())
        listener = CommitOnRevoke(consumer, self._offsets, assignor=self._client.assignor)
        if topics is None:
            # Pattern subscriptions fetch the whole cluster's metadata at every refresh: only
            # for per-channel topics, which appear with channels.
            consumer.subscribe(pattern=self._strategy.subscription_pattern(), listener=listener)
        else:
            consumer.subscribe(topics=topics, listener=listener)
        return consumer

    def _place(self, consumer: KafkaConsumer, partitions: set[TopicPartition]) -> None:
        """Where partitions without a usable committed offset start.

        Feeds that start at the end (gateways) skip the past of topics that existed when they
        first opened (nobody was connected to want it); topics created later start at their
        beginning, so the first messages of a new channel are not lost. Other feeds start at the
        beginning, and so does any partition whose committed offset fell out of retention.
        """
        existing = self._offsets.existing or set()
        start_at = self._offsets.start_at
        to_end = [tp for tp in partitions if self.options.start_at_end and tp.topic in existing]
        to_start = [tp for tp in partitions if tp not in to_end]
        for tp in to_end:
            if tp in start_at:
                consumer.seek(tp, start_at[tp])
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
            self._commit_handed(consumer)
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
            epoch = self._offsets.epoch  # after the poll: a rebalance happens inside it
            deliveries = self.records.deliveries(records)
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
            for batch in self.records.split(deliveries, next_offsets, caught_up, lag, epoch):
                self._offsets.handing(batch.deliveries, batch.next_offsets)
                if not self._handover.put(batch):
                    return

    def _snapshot(
        self, consumer: KafkaConsumer, assignment: set[TopicPartition], *, idle: bool
    ) -> tuple[dict[TopicPartition, int], bool, int | None]:
        """Every assigned partition's position, whether all are read to the end, and the lag."""
        known = self._offsets.partitions
        for topic in {tp.topic for tp in assignment} - set(known):
            found = consumer.partitions_for_topic(topic)
            if found:
                known[topic] = len(found)
        positions = {tp: consumer.position(tp) for tp in assignment}
        caught_up = idle and bool(assignment) and self._at_end(consumer, positions)
        return positions, caught_up, _lag(consumer, positions)

    def _at_end(self, consumer: KafkaConsumer, positions: dict[TopicPartition, int]) -> bool:
        """Whether every partition is read to its end (high-water marks, else a request)."""
        ends = {tp: consumer.highwater(tp) for tp in positions}
        if any(end is None for end in ends.values()):
            ends = consumer.end_offsets(list(positions))
        return all(positions[tp] >= ends[tp] for tp in positions)

    def _commit_handed(self, consumer: KafkaConsumer) -> None:
        """In the poll loop, commit what trio has handed on without waiting for the answer, one
        commit in flight at a time (marks made meanwhile wait for the next, in one request); a
        commit that fails is queued again (``FeedOffsets.retry``)."""
        if self._committing:
            return
        offsets = self._offsets.take_marked()
        if not offsets:
            return
        assigned = consumer.assignment()
        to_commit = {
            tp: OffsetAndMetadata(offset, "", -1)
            for tp, offset in offsets.items()
            if tp in assigned
        }
        if to_commit:
            self._committing = True
            consumer.commit_async(to_commit, callback=self._committed)

    def _committed(self, offsets: dict[TopicPartition, OffsetAndMetadata], result: object) -> None:
        """kafka-python's answer to ``commit_async``, on this thread (inside a later poll)."""
        self._committing = False
        if isinstance(result, BaseException):
            # The messages were handed on; the commit is tried again with the next.
            log.debug("commit failed, to be tried again: %s", result)
            self._offsets.retry({tp: meta.offset for tp, meta in offsets.items()})

    def _commit_written(self, consumer: KafkaConsumer) -> None:
        """When the consumer closes: commit, and wait for, where every assigned partition is
        written up to, so a commit lost on the way is made good."""
        written = self._offsets.written(consumer.assignment())
        if not written:
            return
        to_commit = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in written.items()}
        try:
            consumer.commit(to_commit)
        except KafkaError as exc:
            # The messages were handed on; a failed commit only means they may come again.
            log.warning("commit failed (messages may be redelivered): %s", exc)


def _lag(consumer: KafkaConsumer, positions: dict[TopicPartition, int]) -> int | None:
    """Messages behind the high-water marks the last fetches reported; None before any fetch."""
    total = 0
    for tp, position in positions.items():
        end = consumer.highwater(tp)
        if end is None:
            return None
        total += max(0, end - position)
    return total
