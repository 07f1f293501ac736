"""KafkaSubscriber feeds inside trio, on the real broker: batches, commits, positions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

import pytest
import trio
from kafka import KafkaProducer

from tidings.adapters.kafka.subscriber import KafkaFeed, KafkaSubscriber
from tidings.config import Settings
from tidings.domain import Channel, Message, Position
from tidings.ports import Delivered, FeedOptions, GroupMode

from .helpers import kafka_config, load_settings, numbered, publish_all

pytestmark = pytest.mark.kafka


def options(settings: Settings, *channels: str, **overrides: object) -> FeedOptions:
    values: dict[str, object] = {
        "channels": tuple(Channel(name) for name in channels) if channels else None,
        "group_mode": GroupMode.SHARED,
        "batch_size": 100,
        "timeout": 0.3,
        "group": settings.kafka_consumer_group,
        "node_id": "test-node",
    }
    values.update(overrides)
    return FeedOptions(**values)  # type: ignore[arg-type]


@asynccontextmanager
async def feed(settings: Settings, feed_options: FeedOptions) -> AsyncIterator[KafkaFeed]:
    async with KafkaSubscriber(kafka_config(settings)).open_feed(feed_options) as opened:
        yield opened


async def first_batch(opened: KafkaFeed, timeout: float = 20) -> Sequence[Delivered]:
    with trio.fail_after(timeout):
        async for batch in opened.batches():
            if batch:
                return batch
    raise AssertionError("the feed ended without a batch")


async def read_until_caught_up(
    opened: KafkaFeed, *, commit: bool, timeout: float = 20
) -> list[Delivered]:
    received: list[Delivered] = []
    with trio.fail_after(timeout):
        async for batch in opened.batches():
            received.extend(batch)
            if commit and batch:
                await opened.commit(batch)
            if not batch and opened.caught_up():
                return received
    raise AssertionError("the feed ended before it caught up")


async def publish(
    settings: Settings, items: list[tuple[str, str, object]]
) -> list[tuple[Message, Position]]:
    return await trio.to_thread.run_sync(publish_all, settings, items)


async def test_feed_commits_only_what_was_handed(kafka_env: dict[str, str]) -> None:
    """commit(handed=batch[:3]) then close: the same group resumes with the 4th message."""
    settings = load_settings(kafka_env)
    published = await publish(settings, numbered("chat.1", 10))
    ids = [message.id for message, _ in published]

    async with feed(settings, options(settings, "chat.1")) as opened:
        batch = await first_batch(opened)
        assert len(batch) >= 4, f"expected one batch of the 10 published, got {len(batch)}"
        assert [d.message.id for d in batch] == ids[: len(batch)]
        await opened.commit(handed=batch[:3])

    async with feed(settings, options(settings, "chat.1")) as reopened:
        rest = await read_until_caught_up(reopened, commit=True)
    assert [d.message.id for d in rest] == ids[3:], "resumes exactly after what was handed"

    async with feed(settings, options(settings, "chat.1")) as third:
        assert await read_until_caught_up(third, commit=False) == []


async def test_a_batch_that_was_not_committed_comes_again(kafka_env: dict[str, str]) -> None:
    settings = load_settings(kafka_env)
    published = await publish(settings, numbered("chat.1", 5))
    async with feed(settings, options(settings, "chat.1")) as opened:
        batch = await first_batch(opened)
    async with feed(settings, options(settings, "chat.1")) as reopened:
        again = await first_batch(reopened)
    assert [d.message.id for d in again] == [d.message.id for d in batch]
    assert [d.message.id for d in batch] == [m.id for m, _ in published][: len(batch)]


async def test_a_poll_is_handed_on_in_batches_that_each_commit_only_themselves(
    kafka_env: dict[str, str],
) -> None:
    """A poll reads up to four batches' worth; each batch is at most ``batch_size`` long, and
    committing one commits up to its own last message, not the rest of the poll."""
    settings = load_settings(kafka_env)
    published = await publish(settings, numbered("chat.1", 250))
    ids = [message.id for message, _ in published]
    in_forties = options(settings, "chat.1", batch_size=40)
    async with feed(settings, in_forties) as opened:
        first = await first_batch(opened)
        await opened.commit()
    assert [d.message.id for d in first] == ids[: len(first)]

    sizes: list[int] = [len(first)]
    rest: list[Delivered] = []
    async with feed(settings, in_forties) as reopened:
        with trio.fail_after(20):
            async for batch in reopened.batches():
                sizes.append(len(batch))
                rest.extend(batch)
                if not batch and reopened.caught_up():
                    break
    assert [d.message.id for d in rest] == ids[len(first) :], "resumes after the first batch"
    assert max(sizes) == 40, f"batches of at most batch_size, not {sizes}"


async def test_deliveries_carry_the_positions_the_publisher_got(kafka_env: dict[str, str]) -> None:
    settings = load_settings(kafka_env)
    published = await publish(settings, numbered("chat.1", 4) + numbered("user.3", 4))
    async with feed(settings, options(settings, "chat.1", "user.3")) as opened:
        received = await read_until_caught_up(opened, commit=False)
        frontier_chat = opened.frontier(Channel("chat.1"))
        frontier_empty = opened.frontier(Channel("chat.empty"))
    assert {(d.message.id, d.position) for d in received} == {
        (message.id, position) for message, position in published
    }
    last_chat = [position for message, position in published if message.channel.name == "chat.1"]
    assert frontier_chat == last_chat[-1], "the frontier is the last position handed over"
    assert frontier_empty.offset == -1


async def test_fanout_feeds_of_two_nodes_each_read_everything(kafka_env: dict[str, str]) -> None:
    settings = load_settings(kafka_env)
    published = await publish(settings, numbered("chat.1", 5))
    seen = {}
    for node in ("node-a", "node-b"):
        node_options = options(settings, "chat.1", group_mode=GroupMode.FANOUT, node_id=node)
        assert node_options.group_id() == f"{settings.kafka_consumer_group}.{node}"
        async with feed(settings, node_options) as opened:
            seen[node] = await read_until_caught_up(opened, commit=True)
    expected = [message.id for message, _ in published]
    assert [d.message.id for d in seen["node-a"]] == expected
    assert [d.message.id for d in seen["node-b"]] == expected


async def test_records_that_are_not_envelopes_are_skipped(
    kafka_env: dict[str, str], kafka_bootstrap: str
) -> None:
    settings = load_settings(kafka_env)
    [(first, _)] = await publish(settings, [("chat.1", "before", 1)])
    topic = settings.topic_strategy().topic_for(Channel("chat.1"))

    def produce_garbage() -> None:
        producer = KafkaProducer(bootstrap_servers=kafka_bootstrap)
        try:
            for value in (b"not json", b'{"no": "envelope"}', b"\xff\xfe"):
                producer.send(topic, value=value, key=b"chat.1").get(timeout=10)
        finally:
            producer.close()

    await trio.to_thread.run_sync(produce_garbage)
    [(last, _)] = await publish(settings, [("chat.1", "after", 2)])
    async with feed(settings, options(settings, "chat.1")) as opened:
        received = await read_until_caught_up(opened, commit=True)
    assert [d.message.id for d in received] == [first.id, last.id]


async def test_gateway_feed_starts_at_the_end_of_old_topics_and_reads_new_ones_whole(
    kafka_env: dict[str, str],
) -> None:
    """A gateway feed (every channel, ``start_at_end``) skips the past of channels that existed
    when it opened, and reads a channel created later from its first message."""
    settings = load_settings(kafka_env)
    [(old, _)] = await publish(settings, [("chat.old", "before-open", 0)])
    gateway = options(settings, group_mode=GroupMode.FANOUT, start_at_end=True, timeout=0.2)
    received: list[Delivered] = []
    with trio.fail_after(45):
        async with feed(settings, gateway) as opened:
            batches = opened.batches()
            # Placed at the end of every partition before anything new is published.
            async for batch in batches:
                assert not batch, "nothing new was published yet"
                if opened.caught_up():
                    break
            newer = await publish(
                settings, [("chat.old", "after-open", 1), ("chat.new", "first-of-new", 2)]
            )
            wanted = {message.id for message, _ in newer}
            async for batch in batches:
                received.extend(batch)
                await opened.commit(batch)
                if wanted <= {d.message.id for d in received}:
                    break
    ids = [d.message.id for d in received]
    assert old.id not in ids, "the past of a channel that existed at open was replayed"
    assert sorted(ids) == sorted(wanted)


async def test_a_client_id_passed_through_opens_the_feed(kafka_env: dict[str, str]) -> None:
    """``KAFKA_CONSUMER_SETTINGS=client.id=...`` is a supported setting: the feed opens with it
    and reads (it used to collide with the feed's own client id and kill the consumer thread)."""
    settings = load_settings({**kafka_env, "KAFKA_CONSUMER_SETTINGS": "client.id=ops-chosen"})
    published = await publish(settings, numbered("chat.1", 3))
    async with feed(settings, options(settings, "chat.1")) as opened:
        received = await read_until_caught_up(opened, commit=False)
    assert [d.message.id for d in received] == [m.id for m, _ in published]
