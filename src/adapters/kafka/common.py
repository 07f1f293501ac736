"""What the Kafka adapters share: stream identity, partitioning, errors, record decoding, and the
check that a record's topic carries the channel its envelope names."""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Any, Final

from kafka.partitioner.default import murmur2

from ...application import plain_json
from ...domain import Channel, Message, TopicStrategy
from ...domain.errors import BrokerUnavailable, InvalidChannel, InvalidMessage
from ...domain.position import stream_id
from ...domain.topics import topic_carries
from ...ports import Delivered

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


def data_json(envelope: dict[str, Any]) -> str | None:
    """An envelope's data as JSON text, by orjson in a third of the standard library's time:
    the same values (a float may be written differently, 1e-05 as 0.00001); None when orjson
    cannot encode it, and the message then encodes it itself."""
    return plain_json.dumps(envelope.get("data"))


class KafkaDelivered(Delivered):
    """A delivery from a record: its message built with the data's JSON text from orjson."""

    __slots__ = ()

    def _build(self, envelope: dict[str, Any]) -> Message:
        return Message.from_dict(envelope, trusted=True, data_json=data_json(envelope))


class UndecodableRecords:
    """Counts records that are not tidings envelopes; logs the first and then every 1000th."""

    def __init__(self) -> None:
        self.count = 0

    def decode(self, value: bytes | None, where: str) -> Message | None:
        """The record's message, its envelope decoded by ``plain_json`` (which gives only plain
        JSON, or the standard library's decoding checked like ``Message.from_json``'s)."""
        found = self.envelope(value, where)
        if found is None:
            return None
        try:
            envelope = found[1]
            return Message.from_dict(envelope, trusted=True, data_json=data_json(envelope))
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
                envelope = plain_json.loads(value)
            except plain_json.NotPlain:
                # Rare (a long number, or no valid JSON): the standard library's values, checks
                # and messages.
                envelope = Message.from_json(value).to_dict()
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


ANY_KEY: Final = object()
"""In ``MisplacedRecords.expected_keys``: the topic carries the channel whatever the record key."""
REFUSED: Final = object()
"""In ``MisplacedRecords.expected_keys``: the topic does not carry the channel."""


class MisplacedRecords:
    """Drops records whose envelope names a channel their topic does not carry (ADR 0016).

    The verdict of ``topic_carries`` is remembered per topic and channel as the key a record
    must have (``expected_keys``), so a feed checks a record with one dict look-up and a
    comparison, inline. The memo is bounded (cleared when full: a forger cannot grow it). Drops
    are counted (``count``, surfaced to ``/metrics`` through the feed's status) and logged once
    per topic at WARNING, never once per record.
    """

    MEMO_SIZE = 65_536

    def __init__(self, strategy: TopicStrategy) -> None:
        self.count = 0
        self._strategy = strategy
        self._keyed = strategy.keyed
        self._memo: dict[str, dict[str, object]] = {}
        self._memo_size = 0
        self._warned: set[str] = set()

    def expected_keys(self, topic: str) -> dict[str, object]:
        """For ``topic``: channel name -> ``ANY_KEY``, the record key (bytes) a record of that
        channel must have, or ``REFUSED``; channels not in it yet are decided by ``accepts``.

        A record whose expectation is neither ``ANY_KEY`` nor equal to its key goes through
        ``accepts``, which decides, remembers, and counts a refusal.
        """
        memo = self._memo.get(topic)
        if memo is None:
            memo = self._memo[topic] = {}
        return memo

    def accepts(self, topic: str, key: bytes | None, channel: str) -> bool:
        """Whether a record of ``topic`` keyed ``key`` may deliver a message of ``channel``;
        a refusal is counted."""
        memo = self.expected_keys(topic)
        expected = memo.get(channel)
        if expected is None:
            expected = self._expected_key(topic, channel)
            if self._memo_size >= self.MEMO_SIZE:
                self._memo.clear()
                self._memo_size = 0
                memo = self.expected_keys(topic)
            memo[channel] = expected
            self._memo_size += 1
        if expected is ANY_KEY or expected == key:
            return True
        self._drop(topic, key, channel)
        return False

    def _expected_key(self, topic: str, channel: str) -> object:
        if not self._keyed:
            return ANY_KEY if topic_carries(self._strategy, topic, None, channel) else REFUSED
        key = channel.encode()
        return key if topic_carries(self._strategy, topic, key, channel) else REFUSED

    def _drop(self, topic: str, key: bytes | None, channel: str) -> None:
        self.count += 1
        if topic not in self._warned and len(self._warned) < self.MEMO_SIZE:
            self._warned.add(topic)
            log.warning(
                "dropping records of topic %s whose envelope names a channel the topic does not "
                "carry (first: channel %r, key %r); this is logged once per topic, the count is "
                'tidings_records_dropped_total{reason="wrong_topic"}',
                topic,
                channel,
                key,
            )
