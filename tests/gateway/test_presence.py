"""Presence channels: member lists, joins and leaves (design.md §4, §5 presence; flaw 8)."""

from __future__ import annotations

from typing import Any

import trio

import tidings.client
from tests.support.processes import Gateway
from tests.support.wsclient import Client, connect

from .support import WAIT, abort, aget, broadcast, events_of, next_events, token, unique

ANN = {"name": "Ann"}
BOB = {"name": "Bob"}
CY = {"name": "Cy"}


def members(subscribed: dict[str, Any]) -> list[dict[str, Any]]:
    return sorted(subscribed["data"]["members"], key=lambda member: member["user_id"])


async def next_presence(client: Client, timeout: float = WAIT) -> dict[str, Any]:
    """The next presence event frame (joins and leaves are never mixed with anything else here)."""
    with trio.fail_after(timeout):
        while True:
            frame = await client.recv(timeout)
            if frame.get("type") == "event" and frame["event"].startswith("presence."):
                return frame


async def test_member_list_and_join(gateway: Gateway) -> None:
    room = unique("presence-chat")
    async with tidings.client.connect(gateway.ws_url, token=token("1", info=ANN)) as ann:
        ann_room = await ann.subscribe(room)
        assert ann_room.members == {"1": ANN}
        assert isinstance(ann_room.position, str)

        async with tidings.client.connect(gateway.ws_url, token=token("2", info=BOB)) as bob:
            bob_room = await bob.subscribe(room)
            assert bob_room.members == {"1": ANN, "2": BOB}
            [join] = await next_events(ann_room, 1)
            assert (join.event, join.channel) == ("presence.join", room)
            assert join.data == {"user_id": "2", "user_info": BOB}
            assert ann_room.members == {"1": ANN, "2": BOB}
            # Nobody is told about their own join: Bob's first event is a broadcast made after.
            await broadcast(gateway, room, "after")
            assert [event.event for event in await next_events(bob_room, 1)] == ["after"]


async def test_second_connection_of_a_user_is_one_member(gateway: Gateway) -> None:
    room = unique("presence-chat")
    async with (
        connect(gateway.ws_url, token("1", info=ANN)) as ann,
        connect(gateway.ws_url, token("2", info=BOB)) as bob,
        connect(gateway.ws_url, token("2", info=BOB)) as bob_again,
        connect(gateway.ws_url, token("3", info=CY)) as cy,
    ):
        await ann.subscribe(room)
        await bob.subscribe(room)
        assert (await next_presence(ann))["data"]["user_id"] == "2"
        again = await bob_again.subscribe(room)
        assert members(again) == [
            {"user_id": "1", "user_info": ANN},
            {"user_id": "2", "user_info": BOB},
        ]
        # Cy's join is the next presence event Ann sees: Bob's second tab caused none.
        third = await cy.subscribe(room)
        assert [m["user_id"] for m in members(third)] == ["1", "2", "3"]
        join = await next_presence(ann)
        assert join["event"] == "presence.join" and join["data"]["user_id"] == "3"
        assert [e["data"]["user_id"] for e in events_of(ann.seen, "presence.join")] == ["2", "3"]


async def _leave_by(how: str, client: Client, room: str) -> None:
    if how == "unsubscribe":
        await client.send(type="unsubscribe", channel=room)
    elif how == "close":
        await client.ws.aclose()
    else:
        await abort(client, reset=how == "reset")


async def _check_leave(gateway: Gateway, how: str) -> None:
    room = unique("presence-chat")
    async with connect(gateway.ws_url, token("1", info=ANN)) as ann:
        await ann.subscribe(room)
        async with connect(gateway.ws_url, token("2", info=BOB)) as bob:
            await bob.subscribe(room)
            assert (await next_presence(ann))["event"] == "presence.join"
            with trio.fail_after(5):  # "promptly": no timeout involved, the socket is gone
                await _leave_by(how, bob, room)
                leave = await next_presence(ann, 5)
            assert leave["event"] == "presence.leave"
            assert leave["channel"] == room
            assert leave["data"] == {"user_id": "2", "user_info": BOB}
        # And the member list no longer has Bob.
        async with connect(gateway.ws_url, token("3", info=CY)) as cy:
            assert [m["user_id"] for m in members(await cy.subscribe(room))] == ["1", "3"]


async def test_leave_on_unsubscribe(gateway: Gateway) -> None:
    await _check_leave(gateway, "unsubscribe")


async def test_leave_on_close(gateway: Gateway) -> None:
    await _check_leave(gateway, "close")


async def test_leave_on_abrupt_disconnect_reset(gateway: Gateway) -> None:
    await _check_leave(gateway, "reset")


async def test_leave_on_abrupt_disconnect_without_close_frame(gateway: Gateway) -> None:
    await _check_leave(gateway, "fin")


async def test_leave_only_when_the_last_connection_goes(gateway: Gateway) -> None:
    room, marker = unique("presence-chat"), unique("public.marker")
    async with connect(gateway.ws_url, token("1", info=ANN)) as ann:
        await ann.subscribe(room)
        await ann.subscribe(marker)
        async with connect(gateway.ws_url, token("2", info=BOB)) as tab1:
            await tab1.subscribe(room)
            assert (await next_presence(ann))["event"] == "presence.join"
            async with connect(gateway.ws_url, token("2", info=BOB)) as tab2:
                await tab2.subscribe(room)
                await abort(tab1)
                # Ann hears nothing about Bob: a marker broadcast after the first tab went
                # is the next event she sees. (The gateway sees the tab go at once, but the
                # marker goes through the broker, so first make sure the tab is gone.)
                await _wait_for_connections(gateway, 2)  # ann and tab2
                await broadcast(gateway, marker, "marker", 1)
                nxt = await ann.events(1, WAIT)
                assert nxt[0]["channel"] == marker, nxt
            leave = await next_presence(ann, 5)
            assert leave["event"] == "presence.leave" and leave["data"]["user_id"] == "2"
        assert len(events_of(ann.seen, "presence.leave")) == 1


async def _wait_for_connections(gateway: Gateway, count: int) -> None:
    """Wait until the gateway holds ``count`` connections (tests run one at a time)."""
    with trio.fail_after(5):
        while True:
            health = (await aget(gateway, "/healthz")).json()
            if health["connections"] == count:
                return
            await trio.sleep(0.05)


async def test_anonymous_cannot_be_present(gateway: Gateway) -> None:
    room = unique("presence-chat")
    async with connect(gateway.ws_url) as anonymous:
        await anonymous.send(type="subscribe", channel=room)
        frame = await anonymous.recv()
        assert frame["type"] == "error" and frame["data"]["code"] == 401
