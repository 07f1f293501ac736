"""What the Kafka adapters share: stream identity, partitioning, errors, record decoding."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any

import orjson
from kafka.errors import KafkaError
from kafka.partitioner.default import murmur2

from ...domain import Channel, Message
from ...domain.errors import BrokerUnavailable, InvalidChannel, InvalidMessage
from ...domain.position import stream_id

log = logging.getLogger("tidings.kafka")


@functools.lru_cache(maxsize=65_536)
def kafka_stream(cluster_id: str, topic: str, partition: int) -> str:
    """The stream id of one partition: positions from another cluster or topic never match."""
    return stream_id("kafka", cluster_id, topic, partition)


def partition_for(channel: Channel, partitions: int) -> int:
    """The partition kafka-python's default partitioner gives a record keyed by ``channel``."""
    hashed: int = murmur2(channel.name.encode())
    return (hashed & 0x7FFFFFFF) % partitions


def unavailable(brokers: Sequence[str], exc: BaseException) -> BrokerUnavailable:
    detail = str(exc) or type(exc).__name__
    return BrokerUnavailable(list(brokers), f"Kafka did not answer: {detail}")


def is_kafka_error(exc: BaseException) -> bool:
    return isinstance(exc, KafkaError | OSError | TimeoutError)


class UndecodableRecords:
    """Counts records that are not tidings envelopes; logs the first and then every 1000th."""

    def __init__(self) -> None:
        self.count = 0

    def decode(self, value: bytes | None, where: str) -> Message | None:
        """The record's message, decoded with orjson (which refuses NaN and lone surrogates,
        so what it returns is plain JSON and need not be checked again)."""
        found = self.envelope(value, where)
        if found is None:
            return None
        try:
            return Message.from_dict(found[1], trusted=True)
        except InvalidMessage as exc:
            self.skip(where, exc)
            return None

    def envelope(self, value: bytes | None, where: str) -> tuple[str, dict[str, Any]] | None:
        """The record's channel name and decoded envelope, the channel checked and the rest
        not yet (``Delivered.undecoded``); None when it is no envelope."""
        try:
            if value is None:
                raise InvalidMessage("record has no value")
            try:
                envelope = orjson.loads(value)
            except orjson.JSONDecodeError as exc:
                raise InvalidMessage(f"envelope is not valid JSON: {exc}") from None
            if not isinstance(envelope, dict):
                raise InvalidMessage(f"an envelope is a JSON object, not {type(envelope).__name__}")
            name = envelope.get("channel")
            if not isinstance(name, str):
                raise InvalidMessage(f"envelope has no channel name, but {name!r}")
            try:
                Channel.of(name)
            except InvalidChannel as exc:
                raise InvalidMessage(str(exc)) from exc
            return name, envelope
        except InvalidMessage as exc:
            self.skip(where, exc)
            return None

    def skip(self, where: str, exc: InvalidMessage) -> None:
        self.count += 1
        if self.count == 1 or self.count % 1000 == 0:
            log.warning(
                "skipping %d undecodable record(s); latest at %s: %s", self.count, where, exc
            )
