"""pusher-js 8 in Node against real gateways, on each broker: channels, presence, client events,
sign-in and reconnection, and the same channels shared with tidings' own clients."""

from __future__ import annotations

import json
import socket
import time
from functools import partial

import pusher
import pytest
import trio

from tests.gateway.conftest import Gateways
from tests.gateway.support import broadcast, token, unique
from tests.pusher_js.support import APP_ID, APP_KEY, APP_SECRET, PUSHER_ENV, WAIT, node_clients
from tests.support.processes import Gateway
from tests.support.wsclient import connect


def test_a_broadcast_reaches_pusher_js_with_its_data(gateway: Gateway) -> None:
    channel = unique("news")
    with node_clients(gateway.url) as client:
        listener = client()
        listener.connect()
        listener.subscribe(channel)
        trio.run(broadcast, gateway, channel, "headline", {"title": "tidings speaks Pusher"})
        event = listener.expect_event(channel, "headline")
        assert event["data"] == {"title": "tidings speaks Pusher"}


def test_a_publish_naming_a_socket_id_skips_that_pusher_js_connection_alone(
    gateway: Gateway,
) -> None:
    """The back end passes the sender's ``socket_id`` (``pusher.connection.socket_id``, given to
    it with the request) so the sender does not get its own change back: with Pusher's Python
    library (``trigger(..., socket_id=)``) and with tidings' ``POST /broadcast`` ``exclude``."""
    channel = unique("orders")
    port = int(gateway.url.rsplit(":", 1)[1])
    server = pusher.Pusher(
        app_id=APP_ID, key=APP_KEY, secret=APP_SECRET, host="127.0.0.1", port=port, ssl=False
    )
    with node_clients(gateway.url) as client:
        sender, other = client(), client()
        for each in (sender, other):
            each.connect()
            each.subscribe(channel)
        assert sender.socket_id != other.socket_id

        server.trigger(channel, "edited", {"by": "pusher"}, socket_id=sender.socket_id)
        trio.run(
            partial(broadcast, exclude=sender.socket_id),
            gateway,
            channel,
            "edited",
            {"by": "tidings"},
        )
        server.trigger(channel, "edited", {"by": "everyone"})  # after both, to everybody

        assert [other.expect_event(channel, "edited")["data"]["by"] for _ in range(3)] == [
            "pusher",
            "tidings",
            "everyone",
        ]
        assert sender.expect_event(channel, "edited")["data"] == {"by": "everyone"}


def test_private_channels_take_the_apps_authorization(gateway: Gateway, auth_url: str) -> None:
    channel = unique("private-orders")
    with node_clients(gateway.url, auth_url) as client:
        alice = client()
        alice.connect(user="alice")
        alice.subscribe(channel)
        trio.run(broadcast, gateway, channel, "shipped", {"order": 7})
        assert alice.expect_event(channel, "shipped")["data"] == {"order": 7}

        stranger = client()
        stranger.connect(user="mallory")  # the app refuses: pusher-js reports it on the channel
        stranger.send("subscribe", channel=channel)
        error = stranger.expect_event(channel, "pusher:subscription_error")
        assert error["data"]["status"] == 403


def test_presence_members_join_and_leave(gateway: Gateway, auth_url: str) -> None:
    channel = unique("presence-room")
    with node_clients(gateway.url, auth_url) as client:
        alice = client()
        alice.connect(user="alice")
        first = alice.subscribe(channel)
        assert first["members"] == ["alice"]
        assert first["me"] == "alice"

        bob = client()
        bob.connect(user="bob")
        second = bob.subscribe(channel)
        assert second["members"] == ["alice", "bob"]
        added = alice.expect_event(channel, "pusher:member_added")
        assert added["data"] == {"id": "bob", "info": {"name": "Bob"}}

        bob.send("disconnect")
        removed = alice.expect_event(channel, "pusher:member_removed")
        assert removed["data"]["id"] == "bob"


def test_client_events_reach_the_others_never_the_sender(gateway: Gateway, auth_url: str) -> None:
    channel = unique("presence-chat")
    trio.run(broadcast, gateway, channel, "opened")  # on Kafka, only the server makes topics
    with node_clients(gateway.url, auth_url) as client:
        alice, bob = client(), client()
        alice.connect(user="alice")
        bob.connect(user="bob")
        alice.subscribe(channel, events=("client-typing",))
        bob.subscribe(channel, events=("client-typing",))
        alice.send("trigger", channel=channel, event="client-typing", data={"typing": True})
        assert alice.expect(lambda r: r["type"] == "triggered")["ok"] is True
        event = bob.expect(lambda r: r["type"] == "bound")
        assert event["data"] == {"typing": True}
        assert event["user_id"] == "alice"
        # Bob's event reaches Alice; had hers been echoed to her, it would have come first.
        bob.send("trigger", channel=channel, event="client-typing", data={"typing": False})
        echoed = alice.expect(lambda r: r["type"] == "bound")
        assert echoed["user_id"] == "bob"
        assert echoed["data"] == {"typing": False}


def test_a_signed_in_user_is_told_so_and_gets_what_is_sent_to_her(
    gateway: Gateway, auth_url: str
) -> None:
    with node_clients(gateway.url, auth_url) as client:
        carol = client()
        carol.connect(user="carol")
        carol.send("signin")
        signed = carol.expect(
            lambda r: r["type"] == "global" and r["event"] == "pusher:signin_success"
        )
        assert json.loads(signed["data"]["user_data"])["id"] == "carol"
        # pusher-js then subscribes to the user's own channel, which the gateway grants her.
        deadline = time.monotonic() + WAIT
        while True:
            carol.send("user")
            user = carol.expect(lambda r: r["type"] == "user")
            if user["subscribed"] or time.monotonic() > deadline:
                break
        assert user == {
            "type": "user",
            "data": {"id": "carol", "user_info": {"name": "Carol"}},
            "subscribed": True,
        }
        assert not [r for r in carol.seen if r["type"] == "error"]
        # It is tidings' user.carol: what a service sends to her alone reaches her.
        trio.run(broadcast, gateway, "user.carol", "notice", {"text": "hello Carol"})
        notice = carol.expect(lambda r: r["type"] == "user_event")
        assert (notice["event"], notice["data"]) == ("notice", {"text": "hello Carol"})


def test_a_cache_channel_replays_its_last_event_or_says_it_has_none(gateway: Gateway) -> None:
    cached, empty = unique("cache-prices"), unique("cache-nothing")
    trio.run(broadcast, gateway, cached, "price", {"eur": 1})
    trio.run(broadcast, gateway, cached, "price", {"eur": 2})
    with node_clients(gateway.url) as client:
        late = client()
        late.connect()
        late.subscribe(cached)
        assert late.expect_event(cached, "price")["data"] == {"eur": 2}
        late.subscribe(empty)
        late.expect_event(empty, "pusher:cache_miss")


def test_tidings_clients_and_pusher_clients_share_a_channel(
    gateway: Gateway, auth_url: str
) -> None:
    """A Pusher client's client event reaches a tidings client on the same channel, and a
    tidings client's reaches the Pusher client."""
    channel = unique("private-shared")
    trio.run(broadcast, gateway, channel, "opened")  # on Kafka, only the server makes topics

    async def scenario() -> None:
        with node_clients(gateway.url, auth_url) as client:
            alice = client()
            alice.connect(user="alice")
            alice.subscribe(channel)
            async with connect(gateway.ws_url, token("tim", channels=[channel])) as tim:
                await tim.subscribe(channel)
                alice.send("trigger", channel=channel, event="client-hello", data={"from": "js"})
                got = await tim.expect(type="event", event="client-hello", timeout=20)
                assert got["data"] == {"from": "js"}
                await tim.send(type="event", channel=channel, event="client-hi", data={"n": 1})
                assert (await trio.to_thread.run_sync(alice.expect_event, channel, "client-hi"))[
                    "data"
                ] == {"n": 1}

    trio.run(scenario)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.mark.parametrize("broker", ["memory"], indirect=True)
def test_pusher_js_reconnects_after_the_gateway_restarts(gateways: Gateways) -> None:
    port = _free_port()
    channel = unique("news")
    first = Gateway(gateways.env(**PUSHER_ENV), "--port", str(port))
    try:
        with node_clients(first.url) as client:
            listener = client()
            listener.connect()
            listener.subscribe(channel)
            assert first.stop() == 0
            listener.expect(lambda r: r["type"] == "state" and r["current"] != "connected")
            second = Gateway(gateways.env(**PUSHER_ENV), "--port", str(port))
            try:
                listener.expect(lambda r: r["type"] == "state" and r["current"] == "connected")
                listener.expect_event(channel, "pusher:subscription_succeeded")
                trio.run(broadcast, second, channel, "back", {"again": True})
                assert listener.expect_event(channel, "back")["data"] == {"again": True}
            finally:
                assert second.stop() == 0
    finally:
        if first.process.poll() is None:
            first.stop()
