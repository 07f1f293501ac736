"""What a feed's two sides do when a rebalance takes partitions away (ADR 0025), without Kafka:
``FeedOffsets`` fences revoked partitions, waits for the batch in hand, and says where each was
written up to; and the assignor names are kafka-python's own."""

from __future__ import annotations

import threading

import pytest
from kafka import TopicPartition

from tidings.adapters.kafka.common import kafka_stream
from tidings.adapters.kafka.offsets import FeedOffsets
from tidings.adapters.kafka.rebalance import ASSIGNORS, partition_assignor
from tidings.config import ASSIGNORS as ASSIGNOR_NAMES
from tidings.domain import Message, PerChannelTopics, Position
from tidings.domain.errors import ConfigurationError
from tidings.ports import Delivered

A = TopicPartition("realtime_a", 0)
B = TopicPartition("realtime_b", 0)


def offsets() -> FeedOffsets:
    feed = FeedOffsets(PerChannelTopics("realtime"), 1)
    for tp in (A, B):
        feed.streams[kafka_stream("", tp.topic, tp.partition)] = tp
    return feed


def delivered(tp: TopicPartition, offset: int) -> Delivered:
    channel = tp.topic.removeprefix("realtime_")
    message = Message.event(channel, "e", {"n": offset})
    return Delivered(message, Position(kafka_stream("", tp.topic, tp.partition), offset))


def test_assignor_names_are_kafka_pythons_own() -> None:
    assert tuple(ASSIGNORS) == ASSIGNOR_NAMES
    for name, assignor in ASSIGNORS.items():
        assert assignor.name == name
    with pytest.raises(ConfigurationError, match="unknown assignor 'fair'; known assignors"):
        partition_assignor("fair")


def test_revoke_gives_where_each_partition_is_written_up_to() -> None:
    feed = offsets()
    feed.handing([delivered(A, 10), delivered(B, 3)], {A: 12, B: 4})
    feed.take(feed.epoch)
    feed.mark({A: 11})  # wrote A's 10 only
    found = feed.revoke([A, B], wait=1)
    assert found.in_time
    assert found.written == {A: 11, B: 3}  # B: handed, nothing written: its first record
    assert feed.take_marked() == {}  # committed by the revocation, not again after it


def test_batches_made_before_a_revocation_lose_its_partitions_and_later_ones_keep_them() -> None:
    feed = offsets()
    before = feed.epoch
    feed.revoke([A], wait=0)
    assert feed.take(before) == {A}
    feed.release()
    assert feed.take(feed.epoch) == frozenset()
    feed.release()


def test_revoke_waits_for_the_batch_in_hand_and_commits_it() -> None:
    feed = offsets()
    feed.handing([delivered(A, 0)], {A: 5})
    feed.take(feed.epoch)  # trio is writing it
    writer_done = threading.Event()

    def write_then_mark() -> None:
        writer_done.wait(5)
        feed.mark({A: 5})

    writer = threading.Thread(target=write_then_mark)
    writer.start()
    result: list[dict[TopicPartition, int]] = []
    revoker = threading.Thread(target=lambda: result.append(feed.revoke([A], wait=5).written))
    revoker.start()
    revoker.join(0.2)
    assert revoker.is_alive(), "the revocation did not wait for the batch in hand"
    writer_done.set()
    revoker.join(5)
    writer.join(5)
    assert result == [{A: 5}]


def test_revoke_gives_up_waiting_after_its_bound() -> None:
    feed = offsets()
    feed.handing([delivered(A, 0)], {A: 1})
    feed.take(feed.epoch)
    assert not feed.revoke([A], wait=0.01).in_time


def test_a_failed_commit_is_queued_again_unless_overtaken() -> None:
    feed = offsets()
    feed.mark({A: 5, B: 2})
    assert feed.take_marked() == {A: 5, B: 2}
    feed.mark({A: 9})
    assert feed.take_marked() == {A: 9}
    feed.retry({A: 5, B: 2})  # A's 9 was sent since: 5 must not follow it
    assert feed.take_marked() == {B: 2}
