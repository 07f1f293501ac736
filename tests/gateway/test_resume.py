"""Resuming with ``since``: what was missed, then live, no gap, no duplicate; 410 when it cannot.

design.md §5 "Resume": every delivered event carries an opaque position; a client that
reconnects and subscribes with ``since`` gets what it missed then the live stream, for as long as
the broker retains the data, and error 410 rather than a silent gap when it cannot.
"""

from __future__ import annotations

from typing import Any

import pytest
import trio

from tests.support.processes import Gateway
from tests.support.wsclient import connect

from .support import WAIT, broadcast, broadcast_many, expect_error, unique


def batch(channel: str, label: str, count: int) -> list[dict[str, Any]]:
    return [{"channel": channel, "event": "e", "data": f"{label}{i}"} for i in range(count)]


def data(events: list[dict[str, Any]]) -> list[Any]:
    return [event["data"] for event in events]


async def test_resume_gets_exactly_what_was_missed_then_live(gateway: Gateway) -> None:
    channel = unique("public.feed")
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel)
        await broadcast_many(gateway, batch(channel, "a", 3))
        seen = await client.events(3, WAIT)
        assert data(seen) == ["a0", "a1", "a2"]
        last = seen[-1]["position"]

    missed = await broadcast_many(gateway, batch(channel, "b", 5))

    async with connect(gateway.ws_url) as client:
        reply = await client.subscribe(channel, since=last)
        assert reply["data"]["position"] == last
        replayed = await client.events(5, WAIT)
        assert data(replayed) == ["b0", "b1", "b2", "b3", "b4"]
        assert [e["position"] for e in replayed] == [r["position"] for r in missed]
        await broadcast_many(gateway, batch(channel, "c", 2))
        assert data(await client.events(2, WAIT)) == ["c0", "c1"]
        await client.nothing_more(0.5)


async def test_resume_while_messages_keep_coming_has_no_gap_and_no_duplicate(
    gateway: Gateway,
) -> None:
    channel = unique("public.busy")
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel)
        await broadcast_many(gateway, batch(channel, "a", 2))
        last = (await client.events(2, WAIT))[-1]["position"]

    await broadcast_many(gateway, batch(channel, "b", 30))
    async with connect(gateway.ws_url) as client, trio.open_nursery() as nursery:

        async def keep_publishing() -> None:
            for i in range(30):
                await broadcast(gateway, channel, "e", f"c{i}")

        nursery.start_soon(keep_publishing)
        await client.subscribe(channel, since=last)
        events = await client.events(60, WAIT + 10)
        assert data(events) == [f"b{i}" for i in range(30)] + [f"c{i}" for i in range(30)]
        assert len({e["position"] for e in events}) == 60
        await client.nothing_more(0.5)


async def test_resume_from_the_subscribed_position_without_any_message(gateway: Gateway) -> None:
    channel = unique("public.quiet")
    async with connect(gateway.ws_url) as client:
        start = (await client.subscribe(channel))["data"]["position"]
    await broadcast_many(gateway, batch(channel, "m", 3))
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel, since=start)
        assert data(await client.events(3, WAIT)) == ["m0", "m1", "m2"]
        await client.nothing_more(0.5)


async def test_resume_when_nothing_was_missed_is_just_live(gateway: Gateway) -> None:
    channel = unique("public.calm")
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel)
        await broadcast(gateway, channel, "e", "first")
        last = (await client.events(1, WAIT))[0]["position"]
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel, since=last)
        await broadcast(gateway, channel, "e", "second")
        assert data(await client.events(1, WAIT)) == ["second"]
        await client.nothing_more(0.5)


async def test_position_of_another_channel_is_410_and_the_subscription_stays(
    gateway: Gateway,
) -> None:
    mine, other = unique("public.mine"), unique("public.other")
    foreign = (await broadcast(gateway, other, "e", "elsewhere"))["position"]
    async with connect(gateway.ws_url) as client:
        await client.subscribe(mine, since=foreign)
        error = await expect_error(client, 410)
        assert error["channel"] == mine
        assert foreign in error["data"]["message"]
        await broadcast(gateway, mine, "e", "live")
        [event] = await client.events(1, WAIT)
        assert event["channel"] == mine and event["data"] == "live"


async def test_garbage_position_is_400(gateway: Gateway) -> None:
    channel = unique("public.garbage")
    async with connect(gateway.ws_url) as client:
        await client.send(type="subscribe", channel=channel, since="yesterday-ish")
        error = await expect_error(client, 400)
        assert error["channel"] == channel and "yesterday-ish" in error["data"]["message"]
        # Refused, so not subscribed: unsubscribing is a 404.
        await client.send(type="unsubscribe", channel=channel)
        await expect_error(client, 404)


@pytest.mark.parametrize("broker", ["memory"], indirect=True)
async def test_memory_history_too_short_is_410_then_live(strict_gateway: Gateway) -> None:
    # The strict gateway keeps REALTIME_HISTORY_SIZE=5 messages per channel.
    channel = unique("public.long")
    async with connect(strict_gateway.ws_url) as watcher:
        await watcher.subscribe(channel)
        results = await broadcast_many(strict_gateway, batch(channel, "m", 20))
        await watcher.events(20, WAIT)
    async with connect(strict_gateway.ws_url) as client:
        await client.subscribe(channel, since=results[0]["position"])
        error = await expect_error(client, 410)
        assert error["channel"] == channel
        await broadcast(strict_gateway, channel, "e", "live")
        assert data(await client.events(1, WAIT)) == ["live"]
    async with connect(strict_gateway.ws_url) as client:
        # Within the last five, resuming works.
        await client.subscribe(channel, since=results[16]["position"])
        assert data(await client.events(4, WAIT)) == ["m17", "m18", "m19", "live"]


@pytest.mark.parametrize("broker", ["kafka"], indirect=True)
async def test_kafka_records_deleted_is_410_then_live(gateway: Gateway) -> None:
    from kafka import KafkaAdminClient, TopicPartition

    from tidings.domain import Channel
    from tidings.domain.topics import PerChannelTopics

    channel = unique("public.retained")
    async with connect(gateway.ws_url) as watcher:
        # A client was there and read everything (so the gateway has read it too).
        await watcher.subscribe(channel)
        results = await broadcast_many(gateway, batch(channel, "m", 10))
        await watcher.events(10, WAIT)
    topic = PerChannelTopics(gateway.env["KAFKA_TOPIC_PREFIX"]).topic_for(Channel(channel))

    def delete_first_five() -> None:
        admin = KafkaAdminClient(bootstrap_servers=gateway.env["KAFKA_BROKERS"])
        try:
            admin.delete_records({TopicPartition(topic, 0): 5})
        finally:
            admin.close()

    await trio.to_thread.run_sync(delete_first_five)
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel, since=results[0]["position"])
        error = await expect_error(client, 410)
        assert error["channel"] == channel
        await broadcast(gateway, channel, "e", "live")
        assert data(await client.events(1, WAIT)) == ["live"]
    async with connect(gateway.ws_url) as client:
        # From a position still retained, the rest comes back.
        await client.subscribe(channel, since=results[6]["position"])
        assert data(await client.events(4, WAIT)) == ["m7", "m8", "m9", "live"]
