"""KafkaHistory.replay on the real broker: exactly what followed a position, or a clear refusal."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import trio
from kafka import KafkaAdminClient, TopicPartition

from tidings.adapters.kafka.history import KafkaHistory
from tidings.config import Settings
from tidings.domain import Channel, Message, Position
from tidings.domain.errors import InvalidPosition, PositionExpired
from tidings.ports import Delivered

from .helpers import kafka_config, load_settings, numbered, publish_all

pytestmark = pytest.mark.kafka


@pytest.fixture
async def history(kafka_env: dict[str, str]) -> AsyncIterator[KafkaHistory]:
    reader = KafkaHistory(kafka_config(load_settings(kafka_env)))
    try:
        yield reader
    finally:
        await trio.to_thread.run_sync(reader.close)


async def publish(
    settings: Settings, items: list[tuple[str, str, object]]
) -> list[tuple[Message, Position]]:
    return await trio.to_thread.run_sync(publish_all, settings, items)


async def replay(history: KafkaHistory, channel: str, since: Position) -> list[Delivered]:
    received: list[Delivered] = []
    with trio.fail_after(20):
        async for batch in history.replay(Channel(channel), since):
            received.extend(batch)
    return received


def pairs(deliveries: list[Delivered]) -> list[tuple[str, Position | None]]:
    return [(d.message.id, d.position) for d in deliveries]


async def test_replay_gives_exactly_the_messages_after_a_position(
    kafka_env: dict[str, str], history: KafkaHistory
) -> None:
    settings = load_settings(kafka_env)
    published = await publish(settings, numbered("chat.1", 10) + numbered("chat.2", 3))
    chat1 = [(m.id, p) for m, p in published if m.channel.name == "chat.1"]

    assert pairs(await replay(history, "chat.1", chat1[3][1])) == chat1[4:]
    assert pairs(await replay(history, "chat.1", chat1[-1][1])) == [], "nothing after the last"
    before_first = Position(chat1[0][1].stream, -1)
    assert pairs(await replay(history, "chat.1", before_first)) == chat1
    # The client's text form of a position works the same.
    assert pairs(await replay(history, "chat.1", Position.parse(str(chat1[7][1])))) == chat1[8:]


async def test_replay_of_a_shared_topic_keeps_only_the_channel(
    kafka_env: dict[str, str],
) -> None:
    env = {**kafka_env, "KAFKA_TOPIC_STRATEGY": "shared", "KAFKA_SHARED_TOPICS": "1"}
    settings = load_settings(env)
    items = [(channel, "m", {"seq": n}) for n in range(5) for channel in ("chat.a", "chat.b")]
    published = await publish(settings, items)
    chat_a = [(m.id, p) for m, p in published if m.channel.name == "chat.a"]
    reader = KafkaHistory(kafka_config(settings))
    try:
        replayed = await replay(reader, "chat.a", chat_a[1][1])
    finally:
        await trio.to_thread.run_sync(reader.close)
    assert pairs(replayed) == chat_a[2:]


async def test_position_from_another_stream_is_invalid(
    kafka_env: dict[str, str], history: KafkaHistory
) -> None:
    settings = load_settings(kafka_env)
    published = await publish(settings, [("chat.1", "m", 1), ("chat.2", "m", 2)])
    chat2_position = published[1][1]
    with pytest.raises(InvalidPosition, match="another stream"):
        await replay(history, "chat.1", chat2_position)
    with pytest.raises(InvalidPosition):
        await replay(history, "chat.1", Position("000000000000", 0))


async def test_position_ahead_of_the_channel_is_invalid(
    kafka_env: dict[str, str], history: KafkaHistory
) -> None:
    settings = load_settings(kafka_env)
    [(_, position)] = await publish(settings, [("chat.1", "m", 1)])
    with pytest.raises(InvalidPosition, match="ahead"):
        await replay(history, "chat.1", Position(position.stream, position.offset + 5))


async def test_channel_without_a_topic(kafka_env: dict[str, str], history: KafkaHistory) -> None:
    """Before the first message, "nothing missed" is fine; any other position is invalid."""
    assert await replay(history, "chat.never", Position("000000000000", -1)) == []
    with pytest.raises(InvalidPosition, match="has no topic"):
        await replay(history, "chat.never", Position("000000000000", 3))


async def test_position_before_deleted_records_has_expired(
    kafka_env: dict[str, str], history: KafkaHistory, kafka_admin: KafkaAdminClient
) -> None:
    settings = load_settings(kafka_env)
    published = await publish(settings, numbered("chat.1", 10))
    positions = [position for _, position in published]
    topic = settings.topic_strategy().topic_for(Channel("chat.1"))
    await trio.to_thread.run_sync(
        lambda: kafka_admin.delete_records({TopicPartition(topic, 0): 6}, timeout_ms=10_000)
    )
    with pytest.raises(PositionExpired) as caught:
        await replay(history, "chat.1", positions[2])
    assert caught.value.oldest == str(positions[5]), "names the oldest position still usable"
    # Offset 5 is the last deleted one: "I have everything up to 5" misses nothing.
    replayed = await replay(history, "chat.1", positions[5])
    assert pairs(replayed) == [(m.id, p) for m, p in published[6:]]
