"""Presence between gateway nodes over one compacted Kafka topic, ``{prefix}-presence``.

Every node writes, keyed ``ch|{node}|{channel}``, its latest part of each presence channel,
keyed ``n|{node}|{channel}`` its subscription count of each channel it holds (ADR 0037), and
``hb|{node}`` heartbeats. Compaction keeps the latest record per key, so a node that starts reads
the topic from the beginning and knows the cluster's presence without waiting for traffic; then it
keeps reading live. The topic has one partition: every node sees every record in one order.

Records a previous run of this node left behind are overwritten with empty parts once the topic
is read, so others never keep members of connections that died with that run.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio
from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.errors import KafkaError

from ...domain.presence import PresenceRecord
from ...ports import PresenceSink
from .admin import KafkaAdmin
from .bridge import Handover, reconnecting
from .settings import KafkaClientConfig

log = logging.getLogger("tidings.kafka.presence")

_CAUGHT_UP = object()

RESEND_EVERY = 10
"""Heartbeats between two sendings of this node's presence parts."""


class KafkaPresenceBus:
    """Implements ``PresenceBus`` over Kafka (see the module doc)."""

    def __init__(
        self, config: KafkaClientConfig, topic: str, *, node: str, epoch: str, timeout: float
    ) -> None:
        """``timeout``: seconds after which a silent node's members are forgotten."""
        self._config = config
        self._topic = topic
        self._node = node
        self._epoch = epoch
        self._interval = max(0.2, timeout / 3)
        self._kafka_timeout = config.timeout
        self._pending: dict[str, PresenceRecord] = {}
        self._own: dict[str, PresenceRecord] = {}
        """This node's latest non-empty part per channel, sent again now and then."""
        self._wake = trio.Event()
        self._producer: KafkaProducer | None = None
        self._stop = threading.Event()
        self._stale_own: dict[str, PresenceRecord] = {}

    def publish(self, record: PresenceRecord) -> None:
        self._pending[record.key()] = record
        if record.entries or record.count:
            self._own[record.key()] = record
        else:
            self._own.pop(record.key(), None)
        self._wake.set()

    async def run(
        self, sink: PresenceSink, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        await trio.to_thread.run_sync(self._prepare)
        handover = Handover[Any](1)
        reader = threading.Thread(
            target=self._read, args=(handover,), name="tidings-kafka-presence", daemon=True
        )
        reader.start()
        try:
            async with trio.open_nursery() as nursery:
                started = False
                async for item in handover.items():
                    if item is _CAUGHT_UP:
                        if not started:
                            self._forget_previous_run()
                            sink.expire()
                            nursery.start_soon(self._beat, sink)
                            nursery.start_soon(self._flush_loop)
                            task_status.started()
                            started = True
                        continue
                    for record in item:
                        self._note(record)
                        sink.apply(record)
        finally:
            self._stop.set()
            with trio.CancelScope(shield=True):
                await handover.aclose()
                await trio.to_thread.run_sync(self._say_goodbye)
                await trio.to_thread.run_sync(reader.join, 10)

    # -- Writing -----------------------------------------------------------------------------

    def _prepare(self) -> None:
        admin = KafkaAdmin.for_config(self._config)
        try:
            admin.ensure_topic(self._topic, compacted=True)
        finally:
            admin.close()
        # Not idempotent: after an outage an idempotent producer may wait for a new producer id
        # for ever, and a heartbeat lost is repaired by the next one.
        self._producer = KafkaProducer(
            **self._config.producer(
                f"tidings-presence-{self._node}", linger_ms=5, enable_idempotence=False
            )
        )

    def _send(self, record: PresenceRecord) -> None:
        assert self._producer is not None
        try:
            self._producer.send(
                self._topic, key=record.key().encode(), value=record.to_json().encode()
            )
        except (KafkaError, OSError) as exc:
            log.warning("presence record not sent (%s); the next heartbeat retries", exc)

    async def _flush_loop(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            pending, self._pending = self._pending, {}
            for record in pending.values():
                self._send(record)
            await trio.sleep(0.02)  # coalesce a burst of joins into one record per channel

    async def _beat(self, sink: PresenceSink) -> None:
        """Heartbeats, expiry of silent nodes, and now and then this node's parts again.

        Sending the parts again repairs what an outage cost: a record that failed to send, or
        a node that timed this one out while it was cut off and dropped its members.
        """
        beats = 0
        while True:
            self._send(PresenceRecord(self._node, self._epoch, time.time()))
            beats += 1
            if beats % RESEND_EVERY == 0:
                for key, record in self._own.items():
                    self._pending.setdefault(key, attrs.evolve(record, at=time.time()))
                self._wake.set()
            sink.expire()
            await trio.sleep(self._interval)

    def _note(self, record: PresenceRecord) -> None:
        if record.node == self._node and record.epoch != self._epoch and record.channel:
            self._stale_own[record.key()] = record

    def _forget_previous_run(self) -> None:
        for key, stale in self._stale_own.items():
            if key not in self._pending:
                empty = attrs.evolve(  # no members, or no subscriptions, any more
                    stale,
                    epoch=self._epoch,
                    at=time.time(),
                    entries=(),
                    count=None if stale.count is None else 0,
                )
                self._send(empty)
        self._stale_own.clear()

    def _say_goodbye(self) -> None:
        """Flush what is pending and tell the others to forget this node now."""
        producer = self._producer
        if producer is None:
            return
        for record in self._pending.values():
            self._send(record)
        self._send(PresenceRecord(self._node, self._epoch, time.time(), leaving=True))
        try:
            producer.flush(timeout=self._kafka_timeout)
            producer.close(timeout=self._kafka_timeout)
        except KafkaError as exc:
            log.warning("presence producer did not close cleanly: %s", exc)

    # -- Reading (its own thread) ------------------------------------------------------------

    def _read(self, handover: Handover[Any]) -> None:
        reconnecting(
            lambda connected: self._read_topic(handover, connected),
            stop=self._stop,
            errors=(KafkaError, OSError),
            log=log,
            what="presence reader",
            longest=10.0,
        )

    def _read_topic(self, handover: Handover[Any], connected: Callable[[], None]) -> None:
        """Read the topic from its beginning, say when caught up, then keep reading live."""
        consumer = KafkaConsumer(**self._config.consumer(f"tidings-presence-{self._node}"))
        try:
            partition = TopicPartition(self._topic, 0)
            consumer.assign([partition])
            consumer.seek_to_beginning(partition)
            end = consumer.end_offsets([partition])[partition]
            connected()
            caught_up = False
            while not self._stop.is_set():
                polled = consumer.poll(timeout_ms=200).get(partition, [])
                records = [decoded for r in polled if (decoded := _decode(r.value))]
                if records and not handover.put(records):
                    return
                if not caught_up and consumer.position(partition) >= end:
                    caught_up = True
                    if not handover.put(_CAUGHT_UP):
                        return
        finally:
            consumer.close(autocommit=False)


def _decode(value: bytes | None) -> PresenceRecord | None:
    if value is None:
        return None
    try:
        return PresenceRecord.from_json(value)
    except ValueError as exc:
        log.debug("skipping a presence record: %s", exc)
        return None
