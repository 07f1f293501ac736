"""Laravel Echo 2 on pusher-js (``here`` / ``joining`` / ``leaving``, whispers, ``listen``), one
presence member list for Pusher and tidings clients, and Pusher clients on two gateways of one
Kafka cluster."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from tests.gateway.conftest import Gateways
from tests.gateway.support import broadcast, token, unique
from tests.pusher_js.support import Report, node_clients
from tests.support.processes import Gateway
from tests.support.wsclient import connect


def _is(kind: str) -> Callable[[Report], bool]:
    return lambda report: report["type"] == kind


def test_echo_presence_whispers_and_events(gateway: Gateway, auth_url: str) -> None:
    room = unique("room")
    trio.run(broadcast, gateway, f"presence-{room}", "opened")  # on Kafka, the server makes topics
    news = unique("news")
    with node_clients(gateway.url, auth_url) as client:
        alice = client()
        alice.echo(user="alice")
        alice.send("join", channel=room, whisper="typing")
        assert alice.expect(_is("here"))["users"] == ["Alice"]

        bob = client()
        bob.echo(user="bob")
        bob.send("join", channel=room, whisper="typing")
        assert bob.expect(_is("here"))["users"] == ["Alice", "Bob"]
        assert alice.expect(_is("joining"))["user"] == "Bob"

        bob.send("whisper", channel=room, event="typing", data={"typing": True})
        assert alice.expect(_is("whisper"))["data"] == {"typing": True}

        alice.send("listen", channel=news, event=".headline")
        alice.expect(_is("echo_subscribed"))
        trio.run(broadcast, gateway, news, "headline", {"title": "Echo hears tidings"})
        assert alice.expect(_is("echo_event"))["data"] == {"title": "Echo hears tidings"}

        bob.send("disconnect")
        assert alice.expect(_is("leaving"))["user"] == "Bob"


def test_one_member_list_for_pusher_and_tidings_clients(gateway: Gateway, auth_url: str) -> None:
    channel = unique("presence-mixed")

    async def scenario() -> None:
        with node_clients(gateway.url, auth_url) as client:
            alice = client()
            alice.connect(user="alice")
            alice.subscribe(channel)
            async with connect(
                gateway.ws_url, token("tim", info={"name": "Tim"}, channels=[channel])
            ) as tim:
                subscribed = await tim.subscribe(channel)
                members = {m["user_id"] for m in subscribed["data"]["members"]}
                assert members == {"alice", "tim"}
                added = await trio.to_thread.run_sync(
                    alice.expect_event, channel, "pusher:member_added"
                )
                assert added["data"] == {"id": "tim", "info": {"name": "Tim"}}
                alice.send("disconnect")
                left = await tim.expect(type="event", event="presence.leave", timeout=20)
                assert left["data"]["user_id"] == "alice"

    trio.run(scenario)


@pytest.mark.parametrize("broker", ["kafka"], indirect=True)
def test_pusher_clients_on_two_gateways_share_presence_events_and_client_events(
    gateways: Gateways, gateway: Gateway, auth_url: str
) -> None:
    # The same cluster: the first gateway's topic prefix and group, another node id.
    env = {**gateway.env, "REALTIME_NODE_ID": gateway.env["REALTIME_NODE_ID"] + "-b"}  # type: ignore[attr-defined]
    other = Gateway(env)
    gateways.running.append(other)  # stopped (and must exit 0) with the session's gateways
    channel = unique("presence-cluster")
    trio.run(broadcast, gateway, channel, "opened")  # on Kafka, the server makes topics
    with node_clients(gateway.url, auth_url) as first, node_clients(other.url, auth_url) as second:
        alice, bob = first(), second()
        alice.connect(user="alice")
        bob.connect(user="bob")
        alice.subscribe(channel, events=("client-hello", "news"))
        bob.subscribe(channel, events=("client-hello", "news"))
        added = alice.expect_event(channel, "pusher:member_added")
        assert added["data"]["id"] == "bob"

        trio.run(broadcast, gateway, channel, "news", {"from": "node one"})
        assert bob.expect(_is("bound"))["data"] == {"from": "node one"}
        assert alice.expect(_is("bound"))["data"] == {"from": "node one"}

        alice.send("trigger", channel=channel, event="client-hello", data={"hi": "bob"})
        hello = bob.expect(_is("bound"))
        assert hello["data"] == {"hi": "bob"}
        assert hello["user_id"] == "alice"

        bob.send("disconnect")
        assert alice.expect_event(channel, "pusher:member_removed")["data"]["id"] == "bob"
