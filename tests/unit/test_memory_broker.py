"""The embedded broker: fan-out, shared groups, bounded queues, history and positions, and the
warning when a broadcast reaches nobody in the process."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import trio

from tidings import BrokerOverloaded, BrokerUnavailable, Channel, Message, Position
from tidings.adapters.memory import MemoryBroker
from tidings.adapters.memory.broker import UNREAD
from tidings.domain.errors import InvalidPosition, PositionExpired
from tidings.ports import FeedOptions, GroupMode


def _publish(broker: MemoryBroker, channel: str, n: int = 1) -> list[Message]:
    messages = [Message.event(channel, "e", {"i": i}) for i in range(n)]
    for message in messages:
        broker.publish(channel, message).result(1)
    return messages


async def _drain(feed, count: int) -> list:  # type: ignore[no-untyped-def]
    got: list = []
    with trio.fail_after(5):
        async for batch in feed.batches():
            got.extend(batch)
            if len(got) >= count:
                return got
    return got


async def test_every_fanout_feed_gets_every_message() -> None:
    broker = MemoryBroker()
    async with (
        broker.open_feed(FeedOptions(node_id="a")) as one,
        broker.open_feed(FeedOptions(node_id="b")) as two,
    ):
        sent = _publish(broker, "public.news", 3) + _publish(broker, "user.1", 2)
        for feed in (one, two):
            got = await _drain(feed, 5)
            assert [d.message for d in got] == sent


async def test_shared_feeds_split_channels_and_lose_nothing() -> None:
    broker = MemoryBroker()
    options = FeedOptions(group_mode=GroupMode.SHARED, group="workers", timeout=0.05)
    async with broker.open_feed(options) as one, broker.open_feed(options) as two:
        sent = [m for i in range(40) for m in _publish(broker, f"chat.{i}")]
        got_one: list = []
        got_two: list = []
        for feed, got in ((one, got_one), (two, got_two)):
            async for batch in feed.batches():
                if not batch:
                    break
                got.extend(d.message for d in batch)
        assert got_one and got_two
        assert sorted(m.id for m in got_one + got_two) == sorted(m.id for m in sent)
        assert not {m.channel for m in got_one} & {m.channel for m in got_two}


async def test_a_full_feed_refuses_the_whole_publish() -> None:
    broker = MemoryBroker(queue_size=3)
    async with broker.open_feed(FeedOptions()) as slow, broker.open_feed(FeedOptions()) as fast:
        _publish(broker, "public.x", 3)
        await _drain(fast, 3)
        refused = broker.publish("public.x", Message.event("public.x", "e", 4))
        with pytest.raises(BrokerOverloaded, match="queue"):
            refused.result(1)
        # Nobody got the refused message, and the log did not record it either.
        assert [d.message.data for d in await _drain(slow, 3)] == [{"i": i} for i in range(3)]
        assert fast.caught_up()


async def test_publish_from_another_thread_wakes_the_feed() -> None:
    broker = MemoryBroker()
    async with broker.open_feed(FeedOptions(timeout=10)) as feed:
        thread = threading.Thread(target=_publish, args=(broker, "public.t", 2))
        thread.start()
        got = await _drain(feed, 2)
        thread.join()
        assert [d.message.data for d in got] == [{"i": 0}, {"i": 1}]


async def test_replay_returns_exactly_what_followed_a_position() -> None:
    broker = MemoryBroker(history_size=10)
    _publish(broker, "public.r", 6)
    channel = Channel("public.r")
    since = Position(broker.stream_of(channel), 2)
    replayed = [d async for batch in broker.replay(channel, since) for d in batch]
    assert [d.position.offset for d in replayed] == [3, 4, 5]


async def test_replay_past_history_is_expired_and_foreign_positions_invalid() -> None:
    broker = MemoryBroker(history_size=3)
    _publish(broker, "public.h", 10)
    channel = Channel("public.h")
    stream = broker.stream_of(channel)
    with pytest.raises(PositionExpired):
        [x async for x in broker.replay(channel, Position(stream, 2))]
    assert [
        d.position.offset
        async for batch in broker.replay(channel, Position(stream, 6))
        for d in batch
    ] == [7, 8, 9]
    with pytest.raises(InvalidPosition, match="not from channel"):
        [x async for x in broker.replay(channel, Position(broker.stream_of(Channel("x")), 1))]
    with pytest.raises(InvalidPosition, match="ahead"):
        [x async for x in broker.replay(channel, Position(stream, 10))]


async def test_frontier_is_what_the_feed_handed_over() -> None:
    broker = MemoryBroker()
    channel = Channel("public.f")
    async with broker.open_feed(FeedOptions()) as feed:
        assert feed.frontier(channel).offset == -1
        _publish(broker, "public.f", 3)
        assert feed.frontier(channel).offset == -1  # queued, not handed over yet
        await _drain(feed, 3)
        assert feed.frontier(channel).offset == 2


def test_closed_broker_fails_publishes() -> None:
    broker = MemoryBroker()
    broker.close()
    with pytest.raises(BrokerUnavailable, match="closed"):
        broker.publish("public.x", Message.event("public.x", "e")).result(1)


def test_publish_checks_the_channel_matches() -> None:
    with pytest.raises(ValueError, match=r"public\.b"):
        MemoryBroker().publish("public.a", Message.event("public.b", "e"))


async def _replayed(broker: MemoryBroker, channel: str, since: Position) -> list[Message]:
    return [d.message async for batch in broker.replay(Channel(channel), since) for d in batch]


async def test_one_channels_flood_does_not_push_out_another_channels_history() -> None:
    """Issue 12: the flooder gives up its own oldest messages, not everyone else's."""
    budget = 200_000
    broker = MemoryBroker(history_bytes=budget)
    modest = _publish(broker, "public.b", 10)
    start_of_b = Position(broker.stream_of(Channel("public.b")), -1)
    flood = [Message.event("public.a", "e", {"i": i, "pad": "x" * 1_000}) for i in range(2_000)]
    assert sum(message.size for message in flood) > 10 * budget
    positions = [broker.publish("public.a", message).result(1) for message in flood]

    assert await _replayed(broker, "public.b", start_of_b) == modest
    with pytest.raises(PositionExpired):
        await _replayed(broker, "public.a", Position(positions[0].stream, -1))
    kept = await _replayed(broker, "public.a", positions[-40])
    assert kept == flood[-39:]  # the flooder's latest are kept, in order
    assert broker.history_held_bytes <= budget


async def test_deliveries_are_the_published_messages_themselves() -> None:
    """The history keeps encoded envelopes; the live path hands on the very objects published."""
    broker = MemoryBroker()
    async with broker.open_feed(FeedOptions()) as feed:
        sent = _publish(broker, "public.live", 3)
        got = await _drain(feed, 3)
    assert all(d.message is m for d, m in zip(got, sent, strict=True))


async def test_past_the_channel_bound_the_least_recently_used_history_goes() -> None:
    broker = MemoryBroker(history_channels=2)
    _publish(broker, "public.one")
    _publish(broker, "public.two")
    first_of_one = Position(broker.stream_of(Channel("public.one")), -1)
    _publish(broker, "public.two")
    _publish(broker, "public.three")  # public.one was used least recently: its history goes
    with pytest.raises(InvalidPosition, match="not from channel"):
        await _replayed(broker, "public.one", first_of_one)
    two = Position(broker.stream_of(Channel("public.two")), -1)
    assert len(await _replayed(broker, "public.two", two)) == 2


async def test_resuming_a_channel_that_never_had_a_message_replays_nothing() -> None:
    """A client subscribed to a quiet channel, went away and came back: its ``since`` is the
    position before the first message, and there is nothing to replay (no error, no 410)."""
    broker = MemoryBroker(history_size=2)
    since = Position(broker.stream_of(Channel("public.quiet")), -1)
    assert await _replayed(broker, "public.quiet", since) == []


def _unread_warnings(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "tidings.memory" and record.levelno == logging.WARNING
    ]


def test_broadcasts_nobody_reads_warn_once(caplog: pytest.LogCaptureFixture) -> None:
    broker = MemoryBroker()
    with caplog.at_level(logging.WARNING, logger="tidings.memory"):
        _publish(broker, "public.news", 3)
        _publish(broker, "user.1", 2)
    [record] = _unread_warnings(caplog)
    assert record.getMessage() == UNREAD
    assert "stays in this process" in UNREAD
    assert "REALTIME_BROKER=gateway and REALTIME_GATEWAY_URL=http://HOST:PORT" in UNREAD


async def test_no_warning_while_a_feed_reads_the_broker(caplog: pytest.LogCaptureFixture) -> None:
    broker = MemoryBroker()
    with caplog.at_level(logging.WARNING, logger="tidings.memory"):
        async with broker.open_feed(FeedOptions()) as feed:
            sent = _publish(broker, "public.news", 3)
            assert [d.message for d in await _drain(feed, 3)] == sent
    assert _unread_warnings(caplog) == []


def test_a_plain_process_on_the_memory_broker_is_told_once_on_stderr(tmp_path: Path) -> None:
    """The user's situation: a script (or a web app's process) that broadcasts on the memory
    broker, with no logging set up, while its gateway would run elsewhere."""
    script = (
        "import tidings\n"
        "for i in range(3):\n"
        "    tidings.broadcast('public.news', 'e', i)\n"
        "print('done')\n"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REALTIME_", "KAFKA_"))}
    result = subprocess.run(
        [sys.executable, "-c", script],
        env={**env, "REALTIME_BROKER": "memory"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "done\n"
    assert result.stderr.count("this message stays in this process") == 1, result.stderr
    assert "REALTIME_GATEWAY_URL" in result.stderr
