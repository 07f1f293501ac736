"""Client events: ``client-*`` events on private and presence channels the sender holds (§4)."""

from __future__ import annotations

import tidings.client
from tests.support.processes import Gateway
from tests.support.wsclient import Client, connect

from .support import (
    WAIT,
    broadcast,
    events_of,
    expect_error,
    next_events,
    ping_pong,
    token,
    unique,
)


async def open_room(gateway: Gateway, room: str, *members: Client) -> None:
    """The server broadcasts on ``room`` first, as an application opening it does: on Kafka that
    creates the room's topic, which a client event never does (ADR 0016)."""
    await broadcast(gateway, room, "opened")
    for member in members:
        [event] = await member.events(1, WAIT)
        assert event["event"] == "opened", event


async def test_client_event_reaches_the_others_but_not_the_sender(gateway: Gateway) -> None:
    room = unique("private-room")
    async with (
        connect(gateway.ws_url, token("1")) as ann,
        connect(gateway.ws_url, token("2")) as bob,
        connect(gateway.ws_url, token("3")) as cy,
    ):
        for client in (ann, bob, cy):
            await client.subscribe(room)
        await open_room(gateway, room, ann, bob, cy)
        await ann.send(type="event", channel=room, event="client-typing", data={"who": "Ann"})
        for other in (bob, cy):
            [event] = await other.events(1, WAIT)
            assert event["channel"] == room
            assert event["event"] == "client-typing"
            assert event["data"] == {"who": "Ann"}
            assert isinstance(event["position"], str)
        # The sender's next event is a broadcast made after its own client event.
        await broadcast(gateway, room, "server", "after")
        [event] = await ann.events(1, WAIT)
        assert event["data"] == "after", event
        assert events_of(ann.seen, "client-typing") == []


async def test_client_event_on_a_presence_channel(gateway: Gateway) -> None:
    room = unique("presence-chat")
    async with (
        tidings.client.connect(gateway.ws_url, token=token("1", info={"n": 1})) as ann,
        tidings.client.connect(gateway.ws_url, token=token("2", info={"n": 2})) as bob,
    ):
        ann_room = await ann.subscribe(room)
        await broadcast(gateway, room, "opened")  # on Kafka this creates the room's topic
        assert [event.event for event in await next_events(ann_room, 1)] == ["opened"]
        bob_room = await bob.subscribe(room)
        assert await bob_room.trigger("client-wave") is True
        # Ann first hears Bob join, then his event, signed with his user id.
        join, wave = await next_events(ann_room, 2)
        assert join.event == "presence.join"
        assert (wave.event, wave.channel, wave.data, wave.user_id) == (
            "client-wave",
            room,
            None,
            "2",
        )


async def test_client_event_on_a_public_channel_is_403(gateway: Gateway) -> None:
    channel = unique("public.lobby")
    async with connect(gateway.ws_url, token("1")) as client:
        await client.subscribe(channel)
        await client.send(type="event", channel=channel, event="client-typing", data={})
        error = await expect_error(client, 403)
        assert error["channel"] == channel and channel in error["data"]["message"]
        await ping_pong(client)


async def test_client_event_on_a_channel_not_held_is_403(gateway: Gateway) -> None:
    room = unique("private-room")
    async with (
        connect(gateway.ws_url, token("1")) as sender,
        connect(gateway.ws_url, token("2")) as listener,
    ):
        await listener.subscribe(room)
        await sender.send(type="event", channel=room, event="client-typing", data={})
        error = await expect_error(sender, 403)
        assert error["channel"] == room and "subscribe" in error["data"]["message"]
        await ping_pong(sender)
        # Nothing reached the channel: the listener's next event is a later broadcast.
        await broadcast(gateway, room, "server", "marker")
        [event] = await listener.events(1, WAIT)
        assert event["data"] == "marker"


async def test_client_event_name_without_prefix_is_400(gateway: Gateway) -> None:
    room = unique("private-room")
    async with connect(gateway.ws_url, token("1")) as client:
        await client.subscribe(room)
        await client.send(type="event", channel=room, event="typing", data={})
        error = await expect_error(client, 400)
        assert "client-" in error["data"]["message"] and "typing" in error["data"]["message"]
        await ping_pong(client)
