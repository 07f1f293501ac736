"""Resume from Kafka: read what a client missed straight from the channel's partition.

A few long-lived reader threads (each with its own group-less consumer) take replay requests
from a queue, so a storm of reconnecting clients costs queued reads, not a consumer each. A
request finds the partition whose stream id matches the position (so positions from another
cluster, topic or partition layout are refused), checks the position is still retained, and
reads from just after it to the end offset seen at the start, keeping the channel's messages:
those whose envelope names the channel and whose topic (and, for shared topics, key) carries it
(``MisplacedRecords``, ADR 0016). Its consumers never ask Kafka to create the topic they read.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import AsyncIterator, Sequence
from typing import Any

import attrs
import trio
from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaError

from ...domain import Channel, Position
from ...domain.errors import BrokerUnavailable, InvalidPosition, PositionExpired
from ...ports import Delivered
from .admin import KafkaAdmin
from .bridge import Handover
from .common import MisplacedRecords, UndecodableRecords, kafka_stream, unavailable
from .settings import KafkaClientConfig

log = logging.getLogger("tidings.kafka.history")

READERS = 2
BATCH = 500

_STOP = object()


@attrs.define
class _Request:
    channel: Channel
    since: Position
    handover: Handover[list[Delivered] | BaseException]


class KafkaHistory:
    """Implements ``History`` over Kafka (see the module doc)."""

    def __init__(self, config: KafkaClientConfig, *, readers: int = READERS) -> None:
        self._brokers = config.broker_list
        self._strategy = config.strategy
        self._admin = KafkaAdmin.for_config(config)
        self._config = config.consumer()
        self._requests: queue.Queue[Any] = queue.Queue()
        self._readers = readers
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._cluster_id: str | None = None

    async def replay(self, channel: Channel, since: Position) -> AsyncIterator[Sequence[Delivered]]:
        self._start_readers()
        handover = Handover[list[Delivered] | BaseException](1)
        self._requests.put(_Request(channel, since, handover))
        try:
            async for item in handover.items():
                if isinstance(item, BaseException):
                    raise item
                yield item
        finally:
            with trio.CancelScope(shield=True):
                await handover.aclose()

    def _start_readers(self) -> None:
        with self._lock:
            if self._threads:
                return
            for index in range(self._readers):
                thread = threading.Thread(
                    target=self._read_loop, name=f"tidings-kafka-history-{index}", daemon=True
                )
                thread.start()
                self._threads.append(thread)

    def _cluster(self) -> str:
        if self._cluster_id is None:
            self._cluster_id = self._admin.cluster_id()
        return self._cluster_id

    # -- Reader threads ----------------------------------------------------------------------

    def _read_loop(self) -> None:
        consumer: KafkaConsumer | None = None
        undecodable = UndecodableRecords()
        misplaced = MisplacedRecords(self._strategy)
        try:
            while True:
                request = self._requests.get()
                if request is _STOP:
                    return
                try:
                    if consumer is None:
                        consumer = KafkaConsumer(**self._config)
                    self._serve(consumer, request, undecodable, misplaced)
                except (BrokerUnavailable, InvalidPosition, PositionExpired) as exc:
                    self._answer(request, exc)
                except (KafkaError, OSError) as exc:
                    self._answer(request, unavailable(self._brokers, exc))
                    if consumer is not None:
                        consumer.close(autocommit=False)
                    consumer = None
                finally:
                    self._finish(request)
        finally:
            if consumer is not None:
                consumer.close(autocommit=False)

    def _answer(self, request: _Request, item: list[Delivered] | BaseException) -> bool:
        return request.handover.put(item)

    def _finish(self, request: _Request) -> None:
        request.handover.finish()

    def _serve(
        self,
        consumer: KafkaConsumer,
        request: _Request,
        undecodable: UndecodableRecords,
        misplaced: MisplacedRecords,
    ) -> None:
        channel, since = request.channel, request.since
        topic = self._strategy.topic_for(channel)
        cluster = self._cluster()
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            if since.offset == -1:
                return  # the channel's topic does not exist yet: nothing was missed
            raise InvalidPosition(f"position {since}: channel {channel.name!r} has no topic")
        matching = [p for p in partitions if kafka_stream(cluster, topic, p) == since.stream]
        if not matching:
            raise InvalidPosition(
                f"position {since} belongs to another stream (another cluster, topic or "
                f"partition layout than {channel.name!r} has now)"
            )
        tp = TopicPartition(topic, matching[0])
        start = consumer.beginning_offsets([tp])[tp]
        end = consumer.end_offsets([tp])[tp]
        if since.offset + 1 < start:
            raise PositionExpired(str(since), str(Position(since.stream, start - 1)))
        if since.offset >= end:
            raise InvalidPosition(f"position {since} is ahead of channel {channel.name!r}")
        consumer.assign([tp])
        consumer.seek(tp, since.offset + 1)
        stalled = 0
        while consumer.position(tp) < end:
            records = consumer.poll(timeout_ms=1000, max_records=BATCH).get(tp, [])
            stalled = 0 if records else stalled + 1
            if stalled > 10:
                raise BrokerUnavailable(self._brokers, f"no progress reading {topic}")
            batch = []
            for record in records:
                if record.offset >= end:
                    break
                message = undecodable.decode(record.value, f"{topic}/{tp.partition}")
                if (
                    message is not None
                    and message.channel == channel
                    and misplaced.accepts(topic, record.key, channel.name)
                ):
                    batch.append(Delivered(message, Position(since.stream, record.offset)))
            if batch and not self._answer(request, batch):
                return  # the client went away
        consumer.assign([])

    def close(self) -> None:
        with self._lock:
            threads, self._threads = self._threads, []
        for _ in threads:
            self._requests.put(_STOP)
        for thread in threads:
            thread.join(timeout=10)
        self._admin.close()
