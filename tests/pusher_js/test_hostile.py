"""Hostile Pusher clients over raw sockets: wrong keys and versions, garbage, huge frames, forged
signatures, floods. Each gets Pusher's answer (a ``pusher:error``, a subscription error or a
close code) and the gateway goes on serving everyone else."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
from trio_websocket import ConnectionClosed, WebSocketConnection, open_websocket_url

from tests.gateway.conftest import Gateways
from tests.pusher_js.support import APP_KEY, APP_SECRET, PUSHER_ENV, WAIT
from tests.support.processes import Gateway
from tidings.domain.pusher import channel_auth

pytestmark = pytest.mark.parametrize("broker", ["memory"], indirect=True)

Frame = dict[str, Any]


def app_url(
    gateway: Gateway, query: str = "?protocol=7&client=js&version=8.4.0", key: str = APP_KEY
) -> str:
    return gateway.url.replace("http://", "ws://", 1) + f"/app/{key}{query}"


class Raw:
    def __init__(self, ws: WebSocketConnection, established: Frame) -> None:
        self.ws = ws
        self.established = established
        self.socket_id: str = json.loads(established["data"])["socket_id"]

    async def send(self, frame: object) -> None:
        await self.ws.send_message(frame if isinstance(frame, str | bytes) else json.dumps(frame))

    async def expect(self, match: Callable[[Frame], bool], timeout: float = WAIT) -> Frame:
        with trio.fail_after(timeout):
            while True:
                frame: Frame = json.loads(await self.ws.get_message())
                if match(frame):
                    return frame

    async def error(self) -> Frame:
        frame = await self.expect(lambda f: f["event"] == "pusher:error")
        data: Frame = frame["data"]
        return data

    async def alive(self) -> None:
        """The connection still answers: a ping gets its pong."""
        await self.send({"event": "pusher:ping", "data": {}})
        await self.expect(lambda f: f["event"] == "pusher:pong")


@asynccontextmanager
async def raw(gateway: Gateway) -> AsyncIterator[Raw]:
    async with open_websocket_url(app_url(gateway), message_queue_size=10_000) as ws:
        established = json.loads(await ws.get_message())
        assert established["event"] == "pusher:connection_established"
        yield Raw(ws, established)


async def closed_with(gateway: Gateway, query: str, key: str = APP_KEY) -> tuple[Frame, int]:
    """The ``pusher:error`` and close code a connection to ``/app/{key}{query}`` gets."""
    async with open_websocket_url(app_url(gateway, query, key)) as ws:
        error = json.loads(await ws.get_message())
        with trio.fail_after(WAIT), pytest.raises(ConnectionClosed) as closed:
            await ws.get_message()
        assert closed.value.reason is not None
        return error, closed.value.reason.code


@pytest.mark.parametrize(
    ("query", "key", "code"),
    [
        ("?protocol=7", "no-such-key", 4001),
        ("", APP_KEY, 4008),
        ("?protocol=6", APP_KEY, 4007),
        ("?protocol=seven", APP_KEY, 4006),
    ],
)
async def test_a_refused_connection_hears_pushers_code(
    gateway: Gateway, query: str, key: str, code: int
) -> None:
    error, close_code = await closed_with(gateway, query, key)
    assert error["event"] == "pusher:error"
    assert error["data"]["code"] == code == close_code
    assert ("no-such-key" in error["data"]["message"]) is (code == 4001)


GARBAGE = [
    ("not json", "not valid JSON"),
    (b"\x00\x01", "binary"),
    ("[1, 2]", "JSON object"),
    ("[" * 30_000 + "]" * 30_000, "nested too deeply"),
    ('{"data": {}}', "'event'"),
    ('{"event": "pusher:subscribe", "data": 5}', "JSON object"),
    ('{"event": "pusher:subscribe", "data": {"channel": "no spaces"}}', "not allowed"),
    ('{"event": "pusher:subscribe", "data": {"channel": "' + "a" * 200 + '"}}', "over the limit"),
    ('{"event": "pusher:signin", "data": {"auth": "x"}}', "user_data"),
    ('{"event": "pusher:hack"}', "unknown event"),
    ('{"event": "client-x", "channel": "news", "data": 1}', "not public"),
    ('{"event": "client-x", "channel": "private-x", "data": 1}', "subscribe to"),
]


async def test_garbage_gets_a_pusher_error_and_the_connection_lives(gateway: Gateway) -> None:
    async with raw(gateway) as client:
        for text, says in GARBAGE:
            await client.send(text)
            error = await client.error()
            assert says in error["message"], (text[:40], error)
            assert error["code"] is None
        await client.alive()


async def test_a_frame_over_the_limit_is_refused_and_a_huge_one_closes(gateway: Gateway) -> None:
    async with raw(gateway) as client:
        await client.send({"event": "client-x", "channel": "private-x", "data": "x" * 70_000})
        assert "over the limit" in (await client.error())["message"]
        await client.alive()
        await client.send("x" * 300_000)
        with trio.fail_after(WAIT), pytest.raises(ConnectionClosed) as closed:
            while True:
                await client.ws.get_message()
        assert closed.value.reason is not None
        assert closed.value.reason.code == 1009
    async with raw(gateway) as other:
        await other.alive()


async def test_forged_and_borrowed_signatures_are_refused(gateway: Gateway) -> None:
    async with raw(gateway) as victim, raw(gateway) as thief:
        channel = "private-vault"
        forged = {"channel": channel, "auth": f"{APP_KEY}:{'0' * 64}"}
        borrowed = {
            "channel": channel,
            "auth": channel_auth(APP_KEY, APP_SECRET, victim.socket_id, channel),
        }
        wrong_secret = {
            "channel": channel,
            "auth": channel_auth(APP_KEY, "guess", thief.socket_id, channel),
        }
        for data in (forged, borrowed, wrong_secret, {"channel": channel}):
            await thief.send({"event": "pusher:subscribe", "data": data})
            refused = await thief.expect(lambda f: f["event"] == "pusher:subscription_error")
            assert refused["channel"] == channel
            assert refused["data"]["status"] == 401
            assert (await thief.error())["code"] == 4009
        # Nothing broadcast to the channel reaches the thief; the victim, signed, gets in.
        signed = {
            "channel": channel,
            "auth": channel_auth(APP_KEY, APP_SECRET, victim.socket_id, channel),
        }
        await victim.send({"event": "pusher:subscribe", "data": signed})
        await victim.expect(lambda f: f["event"] == "pusher_internal:subscription_succeeded")
        await thief.send({"event": "client-steal", "channel": channel, "data": {}})
        assert "subscribe to" in (await thief.error())["message"]


async def test_tidings_private_channels_are_not_for_pusher_clients(gateway: Gateway) -> None:
    async with raw(gateway) as client:
        for channel in ("user.1", "private.orders", "presence.room"):
            await client.send({"event": "pusher:subscribe", "data": {"channel": channel}})
            refused = await client.expect(lambda f: f["event"] == "pusher:subscription_error")
            assert refused["data"]["status"] == 403
            assert "tidings" in refused["data"]["error"]


async def test_bad_presence_data_is_refused(gateway: Gateway) -> None:
    async with raw(gateway) as client:
        channel = "presence-lobby"
        for data in (None, "[]", '{"user_id": true}', '{"user_info": {}}'):
            auth = channel_auth(APP_KEY, APP_SECRET, client.socket_id, channel, data)
            payload: Frame = {"channel": channel, "auth": auth}
            if data is not None:
                payload["channel_data"] = data
            await client.send({"event": "pusher:subscribe", "data": payload})
            refused = await client.expect(lambda f: f["event"] == "pusher:subscription_error")
            assert refused["data"]["status"] == 400
        await client.alive()


async def test_a_subscribe_flood_is_limited_then_cut_and_others_are_served(
    gateway: Gateway,
) -> None:
    async with raw(gateway) as flooder:
        codes: list[int | None] = []
        statuses: list[int] = []

        async def flood() -> None:
            try:
                for n in range(5_000):
                    await flooder.send({"event": "pusher:subscribe", "data": {"channel": f"f-{n}"}})
            except ConnectionClosed:
                pass  # cut while flooding, as it should be

        reason = None
        with trio.fail_after(WAIT * 3):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(flood)
                try:
                    while True:
                        frame = json.loads(await flooder.ws.get_message())
                        if frame["event"] == "pusher:error":
                            codes.append(frame["data"]["code"])
                        elif frame["event"] == "pusher:subscription_error":
                            statuses.append(frame["data"]["status"])
                except ConnectionClosed as exc:
                    reason = exc.reason
        assert reason is not None
        assert reason.code == 4301  # flooding: Pusher's rate-limit code, no reconnection
        assert 4301 in codes  # the rate limit said so first
        assert 429 in statuses  # and the channel limit (100 a connection)
    async with raw(gateway) as other:
        await other.send({"event": "pusher:subscribe", "data": {"channel": "after-flood"}})
        await other.expect(lambda f: f["event"] == "pusher_internal:subscription_succeeded")


async def test_a_silent_client_is_pinged_and_cut_when_it_does_not_answer(
    gateways: Gateways,
) -> None:
    quick = gateways.start(REALTIME_IDLE_TIMEOUT="2", **PUSHER_ENV)
    async with raw(quick) as client:
        assert json.loads(client.established["data"])["activity_timeout"] == 1
        await client.expect(lambda f: f["event"] == "pusher:ping")
        await client.send({"event": "pusher:pong", "data": {}})  # alive: pinged again later
        await client.expect(lambda f: f["event"] == "pusher:ping")
        with trio.fail_after(WAIT), pytest.raises(ConnectionClosed) as closed:
            while True:
                await client.ws.get_message()
        assert closed.value.reason is not None
        assert closed.value.reason.code == 4201


async def test_another_users_channel_is_refused(gateway: Gateway) -> None:
    async with raw(gateway) as client:
        channel = "#server-to-user-alice"  # without signing in as alice
        await client.send({"event": "pusher:subscribe", "data": {"channel": channel}})
        refused = await client.expect(lambda f: f["event"] == "pusher:subscription_error")
        assert refused["channel"] == channel
        assert refused["data"]["status"] == 403
