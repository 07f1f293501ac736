"""Pusher's HTTP API, driven by the Python ``pusher`` library from PyPI, on each broker.

What the library publishes reaches tidings' own WebSocket clients; what it asks about channels
is answered from the cluster's counts and presence; what it signs wrong is refused as Pusher
refuses it. Across two nodes on Kafka: tests/cluster/test_pusher_counts.py.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from functools import partial
from typing import Any, TypeVar

import httpx
import pusher
import pytest
import trio
import trio_websocket

from tests.support.processes import Gateway
from tests.support.wsclient import connect
from tidings.domain.pusher.signing import sign

from .conftest import PUSHER_APP
from .support import WAIT, token, unique

T = TypeVar("T")


def client(gateway: Gateway, secret: str = PUSHER_APP["secret"]) -> pusher.Pusher:
    port = int(gateway.url.rsplit(":", 1)[1])
    return pusher.Pusher(
        app_id=PUSHER_APP["app_id"],
        key=PUSHER_APP["key"],
        secret=secret,
        host="127.0.0.1",
        port=port,
        ssl=False,
        timeout=WAIT,
    )


async def call(function: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """A blocking ``pusher`` call, off the event loop."""
    return await trio.to_thread.run_sync(partial(function, *args, **kwargs))


async def until(condition: Callable[[], Any], timeout: float = WAIT) -> Any:
    """Ask ``condition`` (a blocking call) again until it holds; its last answer."""
    with trio.fail_after(timeout):
        while True:
            answer = await trio.to_thread.run_sync(condition)
            if answer:
                return answer
            await trio.sleep(0.05)


def signed_request(
    gateway: Gateway,
    method: str,
    path: str,
    *,
    body: bytes = b"",
    query: dict[str, str] | None = None,
    secret: str = PUSHER_APP["secret"],
    timestamp: int | None = None,
) -> httpx.Response:
    params = sign(
        method,
        path,
        query or {},
        body,
        key=PUSHER_APP["key"],
        secret=secret,
        timestamp=int(time.time()) if timestamp is None else timestamp,
    )
    headers = {"content-type": "application/json"}
    return httpx.request(
        method, gateway.url + path, params=params, content=body, headers=headers, timeout=WAIT
    )


# -- Publishing ----------------------------------------------------------------------------------


async def test_trigger_reaches_a_tidings_client_with_name_and_data_as_published(
    pusher_gateway: Gateway,
) -> None:
    channel = unique("news")
    async with connect(pusher_gateway.ws_url) as ws:
        await ws.subscribe(channel)
        answer = await call(client(pusher_gateway).trigger, channel, "my-event", '{"a": [1, 2]}')
        [event] = await ws.events(1)
    assert answer == {}
    assert (event["channel"], event["event"], event["data"]) == (
        channel,
        "my-event",
        '{"a": [1, 2]}',
    )


async def test_trigger_to_many_channels_reaches_each(pusher_gateway: Gateway) -> None:
    channels = [unique("many") for _ in range(3)]
    async with connect(pusher_gateway.ws_url) as ws:
        for channel in channels:
            await ws.subscribe(channel)
        await call(client(pusher_gateway).trigger, channels, "fan", {"n": 1})
        events = await ws.events(3)
    assert sorted(event["channel"] for event in events) == sorted(channels)
    assert {event["data"] for event in events} == {'{"n": 1}'}


async def test_trigger_batch_publishes_every_event(pusher_gateway: Gateway) -> None:
    one, two = unique("batch"), unique("batch")
    async with connect(pusher_gateway.ws_url) as ws:
        await ws.subscribe(one)
        await ws.subscribe(two)
        answer = await call(
            client(pusher_gateway).trigger_batch,
            [
                {"channel": one, "name": "first", "data": "1"},
                {"channel": two, "name": "second", "data": {"x": "y"}},
            ],
        )
        events = await ws.events(2)
    assert answer == {}
    got = {(event["channel"], event["event"], event["data"]) for event in events}
    assert got == {(one, "first", "1"), (two, "second", '{"x": "y"}')}


async def test_a_socket_id_is_validated_and_excludes_only_that_connection(
    pusher_gateway: Gateway,
) -> None:
    channel = unique("skip")
    async with connect(pusher_gateway.ws_url) as ws:
        await ws.subscribe(channel)
        await call(client(pusher_gateway).trigger, channel, "e", "x", socket_id="123.456")
        [event] = await ws.events(1)
    assert event["event"] == "e"
    body = json.dumps({"name": "e", "data": "x", "channel": channel, "socket_id": "abc"})
    response = await call(
        signed_request, pusher_gateway, "POST", "/apps/4242/events", body=body.encode()
    )
    assert response.status_code == 400
    assert "socket_id" in response.text


async def test_events_with_info_answer_the_counts(pusher_gateway: Gateway) -> None:
    room, news = unique("presence-chat"), unique("counted")
    async with (
        connect(pusher_gateway.ws_url, token("ann")) as ann,
        connect(pusher_gateway.ws_url, token("bob")) as bob,
    ):
        await ann.subscribe(news)
        await ann.subscribe(room)
        await bob.subscribe(room)
        body = json.dumps(
            {"name": "e", "data": "x", "channels": [room], "info": "subscription_count,user_count"}
        )
        response = await call(
            signed_request, pusher_gateway, "POST", "/apps/4242/events", body=body.encode()
        )
        assert response.status_code == 200, response.text
        assert response.json() == {"channels": {room: {"subscription_count": 2, "user_count": 2}}}
        body = json.dumps(
            {"batch": [{"name": "e", "data": "x", "channel": news, "info": "subscription_count"}]}
        )
        response = await call(
            signed_request, pusher_gateway, "POST", "/apps/4242/batch_events", body=body.encode()
        )
        assert response.json() == {"batch": [{"subscription_count": 1}]}


# -- Channels ------------------------------------------------------------------------------------


async def test_channel_info_counts_subscriptions_and_users(pusher_gateway: Gateway) -> None:
    room = unique("presence-chat")
    pc = client(pusher_gateway)
    assert await call(pc.channel_info, room, ["subscription_count"]) == {
        "occupied": False,
        "subscription_count": 0,
    }
    async with (
        connect(pusher_gateway.ws_url, token("ann")) as ann,
        connect(pusher_gateway.ws_url, token("ann")) as ann_again,
        connect(pusher_gateway.ws_url, token("bob")) as bob,
    ):
        for ws in (ann, ann_again, bob):
            await ws.subscribe(room)
        info = await call(pc.channel_info, room, ["subscription_count", "user_count"])
        assert info == {"occupied": True, "subscription_count": 3, "user_count": 2}
        users = await call(pc.users_info, room)
        assert users == {"users": [{"id": "ann"}, {"id": "bob"}]}
    assert await until(lambda: not pc.channel_info(room)["occupied"])


async def test_channels_info_lists_occupied_channels_by_prefix(pusher_gateway: Gateway) -> None:
    base = unique("lobby")
    room = unique("presence-chat")
    pc = client(pusher_gateway)
    async with connect(pusher_gateway.ws_url, token("ann")) as ann:
        await ann.subscribe(f"{base}.one")
        await ann.subscribe(f"{base}.two")
        await ann.subscribe(room)
        listed = await call(pc.channels_info, base)
        assert listed == {"channels": {f"{base}.one": {}, f"{base}.two": {}}}
        presence = await call(pc.channels_info, "presence-", ["user_count"])
        assert presence["channels"][room] == {"user_count": 1}


async def test_user_count_outside_presence_is_refused(pusher_gateway: Gateway) -> None:
    pc = client(pusher_gateway)
    with pytest.raises(pusher.errors.PusherBadRequest, match="presence"):
        await call(pc.channel_info, unique("plain"), ["user_count"])
    with pytest.raises(pusher.errors.PusherBadRequest, match="presence"):
        await call(pc.channels_info, "plain", ["user_count"])
    with pytest.raises(pusher.errors.PusherBadRequest, match="presence"):
        await call(pc.users_info, unique("plain"))


async def test_terminate_user_connections_closes_every_connection_of_that_user(
    pusher_gateway: Gateway,
) -> None:
    async with (
        connect(pusher_gateway.ws_url, token("mallory")) as one,
        connect(pusher_gateway.ws_url, token("mallory")) as two,
        connect(pusher_gateway.ws_url, token("alice")) as other,
    ):
        await one.subscribe(unique("t"))
        await other.subscribe(unique("t"))
        assert await call(client(pusher_gateway).terminate_user_connections, "mallory") == {}
        for ws in (one, two):
            with trio.fail_after(WAIT), pytest.raises(trio_websocket.ConnectionClosed) as closed:
                while True:
                    await ws.ws.get_message()
            reason = closed.value.reason
            assert reason is not None and reason.code == 4401
        await other.send(type="ping")
        assert (await other.expect(type="pong"))["type"] == "pong"
    path = "/apps/4242/users/mallory/terminate_connections"
    response = await call(signed_request, pusher_gateway, "POST", path, body=b"{}")
    assert (response.status_code, response.json()) == (200, {})


# -- Refusals ------------------------------------------------------------------------------------


async def test_a_wrong_secret_is_refused_as_pusher_refuses_it(pusher_gateway: Gateway) -> None:
    with pytest.raises(pusher.errors.PusherBadAuth, match="Invalid signature"):
        await call(client(pusher_gateway, "not-the-secret").trigger, unique("x"), "e", "d")
    response = await call(
        signed_request, pusher_gateway, "GET", "/apps/4242/channels", secret="nope"
    )
    assert response.status_code == 401
    assert response.headers["content-type"].startswith("text/plain")
    assert response.text.startswith("Invalid signature: you should have sent HmacSHA256Hex(")


async def test_a_stale_timestamp_is_refused(pusher_gateway: Gateway) -> None:
    response = await call(
        signed_request,
        pusher_gateway,
        "GET",
        "/apps/4242/channels",
        timestamp=int(time.time()) - 3600,
    )
    assert response.status_code == 401
    assert response.text.startswith("Timestamp expired: Given timestamp (")
    assert "not within 600s of server time" in response.text


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        (b"{not json", 400, "JSON"),
        (b'{"name": "e", "data": "x"}', 400, "channel"),
        (b'{"data": "x", "channel": "a"}', 400, "name"),
        (b'{"name": "e", "channel": "a"}', 400, "data"),
        (b'{"name": "e", "data": {"a": 1}, "channel": "a"}', 400, "string"),
        (b'{"name": "e", "data": "x", "channel": "no spaces"}', 400, "no spaces"),
        (b'{"name": "e", "data": "x", "channels": []}', 400, "channels"),
        (json.dumps({"name": "e", "data": "x", "channels": ["a"] * 101}).encode(), 400, "101"),
        (json.dumps({"name": "e" * 201, "data": "x", "channel": "a"}).encode(), 400, "200"),
        (json.dumps({"name": "e", "data": "x" * 10_241, "channel": "a"}).encode(), 413, "10240"),
        (b"[" * 100_000, 400, "nested too deeply"),
        (b'{"name": "e", "data": "x", "channel": "a", "info": "colour"}', 400, "colour"),
    ],
)
async def test_bad_events_are_refused_naming_what_is_wrong(
    pusher_gateway: Gateway, body: bytes, status: int, words: str
) -> None:
    response = await call(signed_request, pusher_gateway, "POST", "/apps/4242/events", body=body)
    assert response.status_code == status, response.text
    assert words in response.text


async def test_hostile_requests_get_their_status_and_the_gateway_lives(
    pusher_gateway: Gateway,
) -> None:
    url = pusher_gateway.url
    batch = {"batch": [{"name": "e", "data": "x", "channel": "a"}] * 11}
    cases: list[tuple[httpx.Response, int, str]] = [
        (await call(httpx.post, f"{url}/apps/4242/events", content=b"{}"), 401, "Missing"),
        (await call(httpx.get, f"{url}/apps/999/channels"), 404, "999"),
        (await call(httpx.get, f"{url}/apps/4242/nowhere"), 404, "Not found"),
        (await call(httpx.get, f"{url}/apps/4242/events"), 405, "POST"),
        (
            await call(
                signed_request,
                pusher_gateway,
                "POST",
                "/apps/4242/batch_events",
                body=json.dumps(batch).encode(),
            ),
            400,
            "Batch too large",
        ),
    ]
    body = b'{"name": "e", "data": "x", "channel": "a"}'
    wrong_md5 = sign("POST", "/apps/4242/events", {}, body, key="k", secret="s", timestamp=1)
    params = sign(
        "POST",
        "/apps/4242/events",
        {"body_md5": hashlib.md5(b"other").hexdigest()},
        b"",
        key=PUSHER_APP["key"],
        secret=PUSHER_APP["secret"],
        timestamp=int(time.time()),
    )
    assert wrong_md5  # a signature of another app: its key is unknown
    response = await call(httpx.post, f"{url}/apps/4242/events", params=params, content=body)
    cases.append((response, 401, "body_md5"))
    huge = await call(httpx.post, f"{url}/apps/4242/events", content=b"x" * 2_000_000, timeout=WAIT)
    cases.append((huge, 413, ""))
    for response, status, words in cases:
        assert response.status_code == status, response.text
        assert words in response.text
    live = await call(httpx.get, f"{url}/healthz")
    assert live.status_code == 200
