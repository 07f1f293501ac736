"""Connecting, subscribing, unsubscribing and pinging (design.md §4, the WebSocket protocol)."""

from __future__ import annotations

from tests.support.processes import Gateway
from tests.support.wsclient import connect

from .support import WAIT, broadcast, expect_error, ping_pong, token, unique


async def test_anonymous_connection_is_announced_first(gateway: Gateway) -> None:
    async with connect(gateway.ws_url) as one, connect(gateway.ws_url) as two:
        frame = one.connected
        assert frame["type"] == "connected", frame
        data = frame["data"]
        assert data["user_id"] is None
        assert data["node"] == gateway.env["REALTIME_NODE_ID"]
        assert isinstance(data["connection_id"], str) and data["connection_id"]
        assert two.connected["data"]["connection_id"] != data["connection_id"]


async def test_token_connection_carries_its_user(gateway: Gateway) -> None:
    async with connect(gateway.ws_url, token("42", info={"name": "Ann"})) as client:
        assert client.connected["type"] == "connected"
        assert client.connected["data"]["user_id"] == "42"
        assert client.connected["data"]["node"] == gateway.env["REALTIME_NODE_ID"]


async def test_subscribe_reports_a_position(gateway: Gateway) -> None:
    channel = unique("public.news")
    async with connect(gateway.ws_url) as client:
        reply = await client.subscribe(channel)
        assert reply == {"type": "subscribed", "channel": channel, "data": reply["data"]}
        assert isinstance(reply["data"]["position"], str) and reply["data"]["position"]


async def test_ping_gets_pong(gateway: Gateway) -> None:
    async with connect(gateway.ws_url) as client:
        await ping_pong(client)
        await ping_pong(client)


async def test_unsubscribe_stops_delivery(gateway: Gateway) -> None:
    channel, marker = unique("public.news"), unique("public.marker")
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel)
        await client.subscribe(marker)
        await broadcast(gateway, channel, "before", 1)
        [event] = await client.events(1, WAIT)
        assert event["channel"] == channel and event["data"] == 1

        await client.send(type="unsubscribe", channel=channel)
        assert await client.recv() == {"type": "unsubscribed", "channel": channel}
        await broadcast(gateway, channel, "after", 2)
        await broadcast(gateway, marker, "marker", 3)
        # The marker is the next event; order across channels (Kafka topics) is not promised,
        # so also check for a while that the unsubscribed channel's message never comes.
        [event] = await client.events(1, WAIT)
        assert event["channel"] == marker, event
        await client.nothing_more(1.0)


async def test_unsubscribe_of_a_channel_not_held_is_404(gateway: Gateway) -> None:
    channel = unique("public.never")
    async with connect(gateway.ws_url) as client:
        await client.send(type="unsubscribe", channel=channel)
        error = await expect_error(client, 404)
        assert error["channel"] == channel
        assert channel in error["data"]["message"]
        await ping_pong(client)


async def test_second_subscribe_is_idempotent(gateway: Gateway) -> None:
    channel = unique("public.twice")
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel)
        again = await client.subscribe(channel)
        assert again["channel"] == channel
        await broadcast(gateway, channel, "once", "x")
        [event] = await client.events(1, WAIT)
        assert event["data"] == "x"
        # Subscribed twice, delivered once: a ping answered after the event proves no copy is
        # queued behind it (the frames of one connection leave in order).
        await ping_pong(client)
        # And one unsubscribe is enough to leave.
        await client.send(type="unsubscribe", channel=channel)
        assert await client.recv() == {"type": "unsubscribed", "channel": channel}
        await client.send(type="unsubscribe", channel=channel)
        await expect_error(client, 404)
