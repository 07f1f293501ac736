"""Delivery of broadcasts to subscribers (design.md §4 envelope, §5 delivery)."""

from __future__ import annotations

import time

import tidings.client
from tests.support.processes import Gateway
from tests.support.wsclient import connect

from .support import WAIT, broadcast, broadcast_many, next_events, unique


async def test_subscriber_receives_the_envelope(gateway: Gateway) -> None:
    channel = unique("public.orders")
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel)
        before = time.time()
        sent = await broadcast(gateway, channel, "order.shipped", {"order": 7, "items": ["a"]})
        [event] = await client.events(1, WAIT)
        assert event["type"] == "event"
        assert event["id"] == sent["id"]
        assert event["channel"] == channel
        assert event["event"] == "order.shipped"
        assert event["data"] == {"order": 7, "items": ["a"]}
        assert before - 5 <= event["timestamp"] <= time.time() + 5
        assert event["position"] == sent["position"]
        assert {"id", "type", "channel", "event", "data", "timestamp", "position"} <= set(event)


async def test_a_client_not_subscribed_receives_nothing(gateway: Gateway) -> None:
    channel, other = unique("public.a"), unique("public.b")
    async with connect(gateway.ws_url) as subscriber, connect(gateway.ws_url) as bystander:
        await subscriber.subscribe(channel)
        await bystander.subscribe(other)
        await broadcast(gateway, channel, "for-a", 1)
        [event] = await subscriber.events(1, WAIT)
        assert event["channel"] == channel
        # The bystander's own channel gets a message after; it must be the first it sees.
        await broadcast(gateway, other, "for-b", 2)
        [seen] = await bystander.events(1, WAIT)
        assert seen["channel"] == other and seen["data"] == 2
        await bystander.nothing_more(0.5)
        # An anonymous connection that holds no channel at all gets nothing either.
        async with connect(gateway.ws_url) as idle:
            await broadcast(gateway, channel, "for-a", 3)
            [event] = await subscriber.events(1, WAIT)
            assert event["data"] == 3
            await idle.send(type="ping")
            assert await idle.recv() == {"type": "pong"}


async def test_per_channel_order_of_200_messages(gateway: Gateway) -> None:
    channel = unique("public.ticks")
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel)
        results = await broadcast_many(
            gateway, [{"channel": channel, "event": "tick", "data": i} for i in range(200)]
        )
        events = await client.events(200, WAIT + 10)
        assert [event["data"] for event in events] == list(range(200))
        assert [event["id"] for event in events] == [result["id"] for result in results]
        assert [event["position"] for event in events] == [r["position"] for r in results]
        assert len({event["position"] for event in events}) == 200
        await client.nothing_more(0.5)


async def test_two_channels_do_not_leak(gateway: Gateway) -> None:
    first, second = unique("public.left"), unique("public.right")
    async with connect(gateway.ws_url) as a, connect(gateway.ws_url) as b:
        await a.subscribe(first)
        await b.subscribe(second)
        messages = []
        for i in range(10):
            messages.append({"channel": first, "event": "e", "data": f"1-{i}"})
            messages.append({"channel": second, "event": "e", "data": f"2-{i}"})
        await broadcast_many(gateway, messages)
        got_a = await a.events(10, WAIT)
        got_b = await b.events(10, WAIT)
        assert [e["data"] for e in got_a] == [f"1-{i}" for i in range(10)]
        assert [e["data"] for e in got_b] == [f"2-{i}" for i in range(10)]
        assert {e["channel"] for e in got_a} == {first}
        assert {e["channel"] for e in got_b} == {second}
        await a.nothing_more(0.5)
        await b.nothing_more(0.1)


async def test_one_connection_holding_two_channels_gets_each_once(gateway: Gateway) -> None:
    first, second = unique("public.x"), unique("public.y")
    async with connect(gateway.ws_url) as client:
        await client.subscribe(first)
        await client.subscribe(second)
        await broadcast_many(
            gateway,
            [
                {"channel": first, "event": "e", "data": "x1"},
                {"channel": second, "event": "e", "data": "y1"},
                {"channel": first, "event": "e", "data": "x2"},
            ],
        )
        events = await client.events(3, WAIT)
        assert [e["data"] for e in events if e["channel"] == first] == ["x1", "x2"]
        assert [e["data"] for e in events if e["channel"] == second] == ["y1"]
        await client.nothing_more(0.5)


async def test_exclude_skips_exactly_that_connection(gateway: Gateway) -> None:
    channel = unique("public.chat")
    async with (
        tidings.client.connect(gateway.ws_url) as sender,
        tidings.client.connect(gateway.ws_url) as other,
    ):
        sender_chat = await sender.subscribe(channel)
        other_chat = await other.subscribe(channel)
        await broadcast(
            gateway, channel, "said", "hidden-from-sender", exclude=sender.connection_id
        )
        await broadcast(gateway, channel, "said", "for-all")
        assert [e.data for e in await next_events(other_chat, 2)] == [
            "hidden-from-sender",
            "for-all",
        ]
        # In order: the sender's first event is the second broadcast.
        assert [e.data for e in await next_events(sender_chat, 1)] == ["for-all"]
