"""KafkaPublisher and the library's broadcast on the real broker: topics, positions, order,
compression, bounds, and failures that are clear and bounded in time."""

from __future__ import annotations

import time

import pytest
import trio
from kafka import KafkaAdminClient

from tidings.adapters.kafka.publisher import KafkaPublisher
from tidings.adapters.kafka.settings import KafkaClientConfig
from tidings.application.acknowledgement import Acknowledgement
from tidings.domain import Channel, Message, PerChannelTopics, Position
from tidings.domain.errors import BrokerOverloaded, BrokerUnavailable

from .helpers import (
    Cli,
    container_class,
    kafka_config,
    load_settings,
    numbered,
    publish_all,
    publisher_for,
    seqs,
)

pytestmark = pytest.mark.kafka

UNREACHABLE = "127.0.0.1:1"
"""Nothing listens on port 1: connections are refused at once."""


# -- Topic naming ------------------------------------------------------------------------------


def test_user_1_is_published_to_topic_realtime_user_1(
    kafka_bootstrap: str, kafka_admin: KafkaAdminClient
) -> None:
    """The seed's example, with the default prefix: ``user.1`` -> ``realtime_user_1``."""
    assert PerChannelTopics("realtime").topic_for(Channel("user.1")) == "realtime_user_1"
    settings = load_settings({"REALTIME_BROKER": "kafka", "KAFKA_BROKERS": kafka_bootstrap})
    assert settings.kafka_topic_prefix == "realtime"
    [(message, position)] = publish_all(settings, [("user.1", "notification", {"n": 1})])
    assert "realtime_user_1" in kafka_admin.list_topics()
    assert position.offset >= 0
    assert message.channel == Channel("user.1")


def test_topics_are_created_on_first_publish_one_per_channel(
    kafka_env: dict[str, str], kafka_admin: KafkaAdminClient
) -> None:
    prefix = kafka_env["KAFKA_TOPIC_PREFIX"]
    assert not {t for t in kafka_admin.list_topics() if t.startswith(prefix)}
    publish_all(
        load_settings(kafka_env), [("user.1", "e", 1), ("user_1", "e", 2), ("user:1", "e", 3)]
    )
    created = {t for t in kafka_admin.list_topics() if t.startswith(prefix)}
    # The original system let user:1 and user_1 collide (design.md section 3, flaw 6).
    assert len(created) == 3, created
    assert f"{prefix}_user_1" in created


# -- Positions and order -----------------------------------------------------------------------


def test_positions_increase_per_channel_and_streams_differ_between_channels(
    kafka_env: dict[str, str],
) -> None:
    items = [
        item
        for index in range(20)
        for item in (("chat.1", "m", {"seq": index}), ("chat.2", "m", {"seq": index}))
    ]
    published = publish_all(load_settings(kafka_env), items)
    by_channel: dict[str, list[Position]] = {}
    for message, position in published:
        by_channel.setdefault(message.channel.name, []).append(position)
    for channel, positions in by_channel.items():
        assert len({p.stream for p in positions}) == 1, f"{channel} spans streams"
        offsets = [p.offset for p in positions]
        assert offsets == sorted(offsets) and len(set(offsets)) == len(offsets), offsets
        assert offsets == list(range(offsets[0], offsets[0] + 20)), offsets
    assert by_channel["chat.1"][0].stream != by_channel["chat.2"][0].stream
    # Positions survive their text form, as clients hand them back.
    first = by_channel["chat.1"][0]
    assert Position.parse(str(first)) == first


def test_positions_of_a_channel_in_a_multi_partition_topic_stay_in_one_stream(
    kafka_env: dict[str, str],
) -> None:
    """Records are keyed by channel: one channel's messages share a partition, in order."""
    settings = load_settings(kafka_env, kafka_topic_partitions=4)
    published = publish_all(settings, numbered("dashboard.metrics", 50))
    positions = [position for _, position in published]
    assert len({p.stream for p in positions}) == 1
    offsets = [p.offset for p in positions]
    assert offsets == list(range(50))


def test_publish_of_a_message_for_another_channel_is_refused(kafka_env: dict[str, str]) -> None:
    publisher = publisher_for(load_settings(kafka_env))
    try:
        with pytest.raises(ValueError, match=r"chat\.2"):
            publisher.publish("chat.1", Message.event("chat.2", "e", None))
    finally:
        publisher.close()


def test_order_of_1000_messages_on_one_channel_is_kept_end_to_end(
    kafka_env: dict[str, str], cli: Cli
) -> None:
    """Published without waiting in between (nowait), consumed by ``tidings kafka consume``."""
    env = {**kafka_env, "KAFKA_TOPIC_PARTITIONS": "3"}
    settings = load_settings(env)
    publisher = publisher_for(settings)
    try:
        futures: list[Acknowledgement] = []
        for index in range(1000):
            message = Message.event("chat.1", "line", {"seq": index})
            futures.append(publisher.publish("chat.1", message))
        positions = [future.result(timeout=30) for future in futures]
    finally:
        publisher.close()
    assert [None if p is None else p.offset for p in positions] == list(range(1000))

    run = cli.run(
        ["kafka", "consume", "--channels", "chat.1", "--stop-when-empty", "--batch-size", "500"],
        env,
        timeout=60,
    )
    assert run.code == 0, run.describe()
    assert seqs(run.messages) == list(range(1000))
    printed = [Position.parse(message["position"]) for message in run.messages]
    assert printed == positions


# -- Compression -------------------------------------------------------------------------------


def _partition_bytes(client: KafkaAdminClient, topic: str) -> int:
    sizes = [
        partition["partition_size"]
        for broker in client.describe_log_dirs(topic_partitions=[topic])
        for log_dir in broker["log_dirs"]
        for entry in log_dir["topics"]
        if entry["name"] == topic
        for partition in entry["partitions"]
    ]
    assert sizes, f"no log dir entry for {topic}"
    return sum(sizes)


@pytest.mark.parametrize("codec", ["none", "gzip", "snappy", "lz4", "zstd"])
async def test_every_compression_codec_round_trips(
    codec: str, kafka_env: dict[str, str], kafka_admin: KafkaAdminClient
) -> None:
    """Publish with ``KAFKA_COMPRESSION=codec``, consume back, and check the codec was used:
    a very compressible payload takes far less room on the broker than its raw size."""
    from tidings.adapters.kafka.subscriber import KafkaSubscriber
    from tidings.ports import FeedOptions, GroupMode

    settings = load_settings(kafka_env, kafka_compression=codec)
    payload = "tidings " * 4000  # 32 000 bytes, very compressible
    items = [("public.news", "article", {"seq": index, "body": payload}) for index in range(5)]
    published = await trio.to_thread.run_sync(publish_all, settings, items)

    options = FeedOptions(
        channels=(Channel("public.news"),),
        group_mode=GroupMode.SHARED,
        group=settings.kafka_consumer_group,
        timeout=0.5,
    )
    received: list[Message] = []
    with trio.fail_after(30):
        async with KafkaSubscriber(kafka_config(settings)).open_feed(options) as feed:
            async for batch in feed.batches():
                received.extend(delivered.message for delivered in batch)
                await feed.commit(batch)
                if len(received) >= len(items):
                    break
    assert [m.id for m in received] == [m.id for m, _ in published]
    assert all(m.data["body"] == payload for m in received)  # type: ignore[index]

    topic = settings.topic_strategy().topic_for(Channel("public.news"))
    stored = await trio.to_thread.run_sync(_partition_bytes, kafka_admin, topic)
    raw = 5 * len(payload)
    if codec == "none":
        assert stored > raw, f"uncompressed log holds {stored} bytes for {raw} of payload"
    else:
        assert stored < raw / 10, f"{codec}: log holds {stored} bytes for {raw} of payload"


# -- Failures: bounded and clear ---------------------------------------------------------------


def _unreachable_settings(**extra: object) -> object:
    return load_settings(
        {"REALTIME_BROKER": "kafka", "KAFKA_BROKERS": UNREACHABLE, "KAFKA_TIMEOUT": "2"}, **extra
    )


def test_broadcast_to_an_unreachable_broker_fails_with_broker_unavailable_in_time() -> None:
    container = container_class().for_settings(_unreachable_settings())
    try:
        realtime = container.realtime()
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable) as caught:
            realtime.broadcast("chat.1", "hello", {"n": 1})
        elapsed = time.monotonic() - started
    finally:
        container.shutdown_resources()
    assert elapsed < 5, f"broadcast took {elapsed:.1f}s to fail with KAFKA_TIMEOUT=2"
    assert caught.value.brokers == [UNREACHABLE]
    assert UNREACHABLE in str(caught.value)
    assert str(caught.value).startswith(f"no broker reachable at {UNREACHABLE}")


def test_broadcast_nowait_returns_at_once_and_its_future_fails_in_time() -> None:
    container = container_class().for_settings(_unreachable_settings())
    try:
        realtime = container.realtime()
        started = time.monotonic()
        pending = [realtime.broadcast_nowait("chat.1", "hello", {"n": n}) for n in range(20)]
        assert time.monotonic() - started < 0.5, "broadcast_nowait blocked its caller"
        for item in pending:
            with pytest.raises(BrokerUnavailable, match=UNREACHABLE):
                item.result(timeout=10)
        elapsed = time.monotonic() - started
    finally:
        container.shutdown_resources()
    # A burst fails together, not one timeout after another.
    assert elapsed < 5, f"20 queued broadcasts took {elapsed:.1f}s to fail"


async def test_abroadcast_from_trio_fails_with_broker_unavailable_in_time() -> None:
    container = container_class().for_settings(_unreachable_settings())
    try:
        realtime = container.realtime()
        started = trio.current_time()
        with trio.fail_after(8), pytest.raises(BrokerUnavailable, match=UNREACHABLE):
            await realtime.abroadcast("chat.1", "hello", {"n": 1})
        assert trio.current_time() - started < 5
    finally:
        container.shutdown_resources()


def test_unresolvable_broker_name_fails_in_time() -> None:
    container = container_class().for_settings(
        load_settings(
            {
                "REALTIME_BROKER": "kafka",
                "KAFKA_BROKERS": "kafka.invalid:9092",
                "KAFKA_TIMEOUT": "2",
            }
        )
    )
    try:
        started = time.monotonic()
        with pytest.raises(BrokerUnavailable, match=r"kafka\.invalid:9092"):
            container.realtime().broadcast("chat.1", "hello")
        assert time.monotonic() - started < 5
    finally:
        container.shutdown_resources()


def test_in_flight_bound_gives_broker_overloaded() -> None:
    """Messages waiting on a dead broker are bounded: beyond the bound, BrokerOverloaded now."""
    config = KafkaClientConfig([UNREACHABLE], PerChannelTopics("bound"), timeout=2)
    publisher = KafkaPublisher(config, client_id="tidings-test", max_in_flight=3)
    try:
        accepted = [publisher.publish("chat.1", Message.event("chat.1", "e", n)) for n in range(3)]
        started = time.monotonic()
        refused = publisher.publish("chat.1", Message.event("chat.1", "e", 99))
        assert time.monotonic() - started < 0.1
        assert refused.done(), "the message over the bound must be refused at once"
        with pytest.raises(BrokerOverloaded, match="not published"):
            refused.result(timeout=0)
        for future in accepted:
            with pytest.raises(BrokerUnavailable):
                future.result(timeout=10)
        # Once the failed ones are settled, there is room again (and it fails the normal way).
        again = publisher.publish("chat.1", Message.event("chat.1", "e", 100))
        with pytest.raises(BrokerUnavailable):
            again.result(timeout=10)
    finally:
        publisher.close()


def test_publish_after_close_fails_instead_of_hanging(kafka_env: dict[str, str]) -> None:
    publisher = publisher_for(load_settings(kafka_env))
    publisher.close()
    future = publisher.publish("chat.1", Message.event("chat.1", "e", None))
    with pytest.raises(BrokerUnavailable, match="closed"):
        future.result(timeout=1)
