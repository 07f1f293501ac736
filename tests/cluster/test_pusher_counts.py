"""Pusher's HTTP API and webhooks across nodes on Kafka (ADR 0037).

Every node answers the cluster's subscription counts and presence; a user's connections close on
every node; occupancy webhooks go out once per cluster, also for what a killed node took with it.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from functools import partial
from typing import Any

import pusher
import pytest
import trio
import trio_websocket

from tests.gateway.support import token
from tests.support.webhooks import WebhookReceiver
from tests.support.wsclient import Client, connect

from .conftest import PRESENCE_TIMEOUT, Cluster, Node

pytestmark = pytest.mark.kafka

APP = {"app_id": "77", "key": "cluster-key", "secret": "cluster-secret"}
WAIT = 30.0
BOUND = PRESENCE_TIMEOUT + 10
"""How long a killed node's subscriptions may still count: the presence timeout plus a margin."""


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    started = WebhookReceiver()
    try:
        yield started
    finally:
        started.close()


@pytest.fixture(scope="module")
def pusher_cluster(kafka_bootstrap: str, receiver: WebhookReceiver) -> Iterator[Cluster]:
    """Nodes ``a`` and ``b`` with one Pusher app and one webhook receiver."""
    cluster = Cluster(kafka_bootstrap)
    try:
        for name in ("a", "b"):
            cluster.start(name, **settings(receiver))
        yield cluster
    finally:
        cluster.shutdown()


def settings(receiver: WebhookReceiver) -> dict[str, str]:
    return {
        "PUSHER_APP_ID": APP["app_id"],
        "PUSHER_APP_KEY": APP["key"],
        "PUSHER_APP_SECRET": APP["secret"],
        "PUSHER_WEBHOOK_URL": receiver.url,
    }


def api(node: Node) -> pusher.Pusher:
    return pusher.Pusher(
        app_id=APP["app_id"],
        key=APP["key"],
        secret=APP["secret"],
        host="127.0.0.1",
        port=node.port,
        ssl=False,
        timeout=WAIT,
    )


async def until(ask: Callable[[], Any], wanted: Any, timeout: float = WAIT) -> None:
    """Ask again (a blocking call, off the loop) until the answer is ``wanted``."""
    answer = None
    with trio.move_on_after(timeout):
        while True:
            answer = await trio.to_thread.run_sync(ask)
            if answer == wanted:
                return
            await trio.sleep(0.1)
    raise AssertionError(f"still {answer!r}, not {wanted!r}, after {timeout} s")


def unique(prefix: str) -> str:
    return f"{prefix}.{secrets.token_hex(4)}"


def hooks_of(receiver: WebhookReceiver, channel: str) -> list[dict[str, Any]]:
    checker = pusher.Pusher(app_id=APP["app_id"], key=APP["key"], secret=APP["secret"])
    events = []
    for request in list(receiver.received):
        body = checker.validate_webhook(
            request.headers["x-pusher-key"], request.headers["x-pusher-signature"], request.body
        )
        assert body is not None
        events.extend(event for event in body["events"] if event.get("channel") == channel)
    return events


async def open_clients(
    stack: AsyncExitStack, placement: list[tuple[Node, str | None]], channel: str
) -> list[Client]:
    clients = []
    for node, user in placement:
        ws = await stack.enter_async_context(
            connect(node.ws_url, token(user) if user is not None else None)
        )
        await ws.subscribe(channel)
        clients.append(ws)
    return clients


async def test_counts_and_members_are_the_clusters_on_every_node(
    pusher_cluster: Cluster,
) -> None:
    a, b = pusher_cluster.nodes[:2]
    news, room = unique("news"), unique("presence-chat")
    async with AsyncExitStack() as stack:
        await open_clients(stack, [(a, None), (a, None), (b, None)], news)
        await open_clients(stack, [(a, "ann"), (b, "bob"), (b, "bob")], room)
        for node in (a, b):
            await until(
                partial(api(node).channel_info, news, ["subscription_count"]),
                {"occupied": True, "subscription_count": 3},
            )
            await until(
                partial(api(node).channel_info, room, ["subscription_count", "user_count"]),
                {"occupied": True, "subscription_count": 3, "user_count": 2},
            )
            await until(
                partial(api(node).users_info, room), {"users": [{"id": "ann"}, {"id": "bob"}]}
            )
            listed = await trio.to_thread.run_sync(api(node).channels_info, news)
            assert listed == {"channels": {news: {}}}
    for node in (a, b):
        await until(partial(api(node).channel_info, news), {"occupied": False})


async def test_terminate_closes_the_users_connections_on_every_node(
    pusher_cluster: Cluster,
) -> None:
    a, b = pusher_cluster.nodes[:2]
    async with AsyncExitStack() as stack:
        doomed = await open_clients(stack, [(a, "eve"), (b, "eve")], unique("t"))
        [spared] = await open_clients(stack, [(b, "sam")], unique("t"))
        await trio.to_thread.run_sync(api(a).terminate_user_connections, "eve")
        for ws in doomed:
            with trio.fail_after(WAIT), pytest.raises(trio_websocket.ConnectionClosed) as closed:
                while True:
                    await ws.ws.get_message()
            reason = closed.value.reason
            assert reason is not None and reason.code == 4401
        await spared.send(type="ping")
        await spared.expect(type="pong")


async def test_occupancy_webhooks_go_out_once_per_cluster(
    pusher_cluster: Cluster, receiver: WebhookReceiver
) -> None:
    a, b = pusher_cluster.nodes[:2]
    channel = unique("hooked")
    async with AsyncExitStack() as stack:
        await open_clients(stack, [(a, None)], channel)
        await until(partial(api(b).channel_info, channel), {"occupied": True})
        async with AsyncExitStack() as inner:
            await open_clients(inner, [(b, None)], channel)
            await until(
                partial(api(a).channel_info, channel, ["subscription_count"]),
                {"occupied": True, "subscription_count": 2},
            )
        await until(
            partial(api(a).channel_info, channel, ["subscription_count"]),
            {"occupied": True, "subscription_count": 1},
        )
    wanted = [
        {"name": "channel_occupied", "channel": channel},
        {"name": "channel_vacated", "channel": channel},
    ]
    await until(partial(hooks_of, receiver, channel), wanted)


async def test_a_killed_nodes_subscriptions_are_forgotten_and_reported_once(
    pusher_cluster: Cluster, receiver: WebhookReceiver
) -> None:
    a, b = pusher_cluster.nodes[:2]
    doomed = pusher_cluster.start("z", **settings(receiver))  # "z": never the reporting node
    channel = unique("orphan")
    async with AsyncExitStack() as stack:
        await open_clients(stack, [(doomed, None), (doomed, None)], channel)
        await until(
            partial(api(a).channel_info, channel, ["subscription_count"]),
            {"occupied": True, "subscription_count": 2},
        )
        await trio.to_thread.run_sync(doomed.process.kill)
        for node in (a, b):
            await until(partial(api(node).channel_info, channel), {"occupied": False}, BOUND)
    wanted = [
        {"name": "channel_occupied", "channel": channel},
        {"name": "channel_vacated", "channel": channel},
    ]
    await until(partial(hooks_of, receiver, channel), wanted)
