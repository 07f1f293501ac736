"""Every refusal is an error frame with a code and a message naming the problem (design.md §4/§5).

Refused frames never cost the connection: after each one a ping still gets a pong. Only a bad
token at connect time, a flood and oversize beyond the transport's limit close it.
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any

import jwt
import pytest
import trio
import trio_websocket

from tests.conftest import SECRET
from tests.support.processes import Gateway
from tests.support.wsclient import Client, connect

from .support import WAIT, broadcast, close_code, expect_error, ping_pong, token, unique

# -- Tokens ----------------------------------------------------------------------------------


@pytest.mark.parametrize("channel", ["user.1", "private-team.x", "presence-chat.x"])
async def test_private_and_presence_channels_need_a_token(gateway: Gateway, channel: str) -> None:
    async with connect(gateway.ws_url) as client:
        await client.send(type="subscribe", channel=channel)
        error = await expect_error(client, 401)
        assert error["channel"] == channel
        assert channel in error["data"]["message"] and "token" in error["data"]["message"]
        await ping_pong(client)


def _expired() -> str:
    return jwt.encode({"sub": "1", "exp": int(time.time()) - 10}, SECRET, algorithm="HS256")


def _forged() -> str:
    return jwt.encode(
        {"sub": "1", "exp": int(time.time()) + 60}, "another-secret-" + "y" * 32, algorithm="HS256"
    )


def _unsigned() -> str:
    return jwt.encode({"sub": "1", "exp": int(time.time()) + 60}, None, algorithm="none")


@pytest.mark.parametrize(
    ("make", "close", "words"),
    [
        (_forged, 4401, "signature"),
        (lambda: "not-a-token", 4401, "malformed"),
        (lambda: jwt.encode({"sub": "1"}, SECRET, algorithm="HS256"), 4401, "exp"),
        (_unsigned, 4401, "algorithm"),
        (_expired, 4001, "expired"),
    ],
    ids=["bad-signature", "malformed", "no-expiry", "alg-none", "expired"],
)
async def test_bad_token_gets_401_then_close(
    gateway: Gateway, make: Any, close: int, words: str
) -> None:
    async with connect(gateway.ws_url, make()) as client:
        first = client.connected
        assert first["type"] == "error", first
        assert first["data"]["code"] == 401
        assert words in first["data"]["message"], first
        assert await close_code(client) == close


async def test_another_users_channel_is_403_naming_both(gateway: Gateway) -> None:
    async with connect(gateway.ws_url, token("1")) as client:
        await client.send(type="subscribe", channel="user.2")
        error = await expect_error(client, 403)
        assert error["channel"] == "user.2"
        assert "'2'" in error["data"]["message"] and "'1'" in error["data"]["message"]
        await client.send(type="subscribe", channel="user.2.inbox")
        error = await expect_error(client, 403)
        assert error["channel"] == "user.2.inbox"
        reply = await client.subscribe("user.1")  # its own channel is fine
        assert reply["channel"] == "user.1"
        # user.1.inbox belongs to a user named "1.inbox", not to user 1 (owners match exactly)
        await client.send(type="subscribe", channel="user.1.inbox")
        error = await expect_error(client, 403)
        assert "'1.inbox'" in error["data"]["message"]


async def test_resuming_another_users_channel_is_refused_and_leaks_nothing(
    gateway: Gateway,
) -> None:
    channel = f"user.{secrets.token_hex(3)}"
    first = await broadcast(gateway, channel, "secret", "for the owner only")
    await broadcast(gateway, channel, "secret", "also private")
    async with connect(gateway.ws_url, token("intruder")) as client:
        await client.send(type="subscribe", channel=channel, since=first["position"])
        error = await expect_error(client, 403)
        assert error["channel"] == channel
        await ping_pong(client)
        await client.nothing_more(0.5)
        assert [f for f in client.seen if f.get("type") == "event"] == []


async def test_private_channel_without_a_rule_is_403(gateway: Gateway) -> None:
    channel = unique("private-secret")
    async with connect(gateway.ws_url, token("1")) as client:
        await client.send(type="subscribe", channel=channel)
        error = await expect_error(client, 403)
        assert error["channel"] == channel
        assert channel in error["data"]["message"]
        await ping_pong(client)


async def test_channel_rules_allow_and_refuse(gateway: Gateway) -> None:
    # REALTIME_CHANNEL_RULES: private-team.*=authenticated; private-admin.*=users:1
    team, admin = unique("private-team"), unique("private-admin")
    async with (
        connect(gateway.ws_url, token("1")) as one,
        connect(gateway.ws_url, token("2")) as two,
    ):
        await one.subscribe(team)
        await two.subscribe(team)
        await one.subscribe(admin)
        await two.send(type="subscribe", channel=admin)
        error = await expect_error(two, 403)
        assert error["channel"] == admin and "'2'" in error["data"]["message"]
        # The wildcard matches one segment only.
        await one.send(type="subscribe", channel=team + ".deeper")
        await expect_error(one, 403)


async def test_token_channel_grant_allows(gateway: Gateway) -> None:
    granted = unique("private-grant")
    async with (
        connect(gateway.ws_url, token("5", channels=["private-grant.*"])) as holder,
        connect(gateway.ws_url, token("6")) as other,
    ):
        await holder.subscribe(granted)
        await other.send(type="subscribe", channel=granted)
        await expect_error(other, 403)


# -- Bad frames ------------------------------------------------------------------------------

BAD_FRAMES: list[tuple[str, str | bytes, str]] = [
    ("not-json", "{type: subscribe", "JSON"),
    ("json-array", '["subscribe", "public.news"]', "list"),
    ("json-string", '"ping"', "str"),
    ("unknown-type", '{"type": "publish", "channel": "public.news"}', "'publish'"),
    ("no-type", '{"channel": "public.news"}', "type"),
    ("missing-channel", '{"type": "subscribe"}', "channel"),
    ("invalid-channel", '{"type": "subscribe", "channel": "bad channel!"}', "bad channel!"),
    ("channel-not-string", '{"type": "subscribe", "channel": 12}', "str"),
    ("empty-channel", '{"type": "subscribe", "channel": ""}', "empty"),
    (
        "since-garbage",
        '{"type": "subscribe", "channel": "public.a", "since": "garbage"}',
        "garbage",
    ),
    ("since-number", '{"type": "subscribe", "channel": "public.a", "since": 12}', "int"),
    ("binary", b'{"type": "ping"}', "binary"),
    ("deeply-nested", "[" * 30_000 + "]" * 30_000, "nested"),
    (
        "event-not-client",
        '{"type": "event", "channel": "private-room.1", "event": "typing"}',
        "client-",
    ),
    ("event-no-name", '{"type": "event", "channel": "private-room.1"}', "client-"),
]


@pytest.mark.parametrize(
    ("raw", "words"),
    [(raw, words) for _, raw, words in BAD_FRAMES],
    ids=[name for name, _, _ in BAD_FRAMES],
)
async def test_bad_frame_is_400_and_the_connection_keeps_working(
    gateway: Gateway, raw: str | bytes, words: str
) -> None:
    async with connect(gateway.ws_url, token("1")) as client:
        await client.send_raw(raw)
        error = await expect_error(client, 400)
        assert words in error["data"]["message"], error
        await ping_pong(client)


async def test_many_bad_frames_in_a_row_still_leave_the_connection_usable(gateway: Gateway) -> None:
    channel = unique("public.after")
    async with connect(gateway.ws_url, token("1")) as client:
        for _, raw, _ in BAD_FRAMES:
            await client.send_raw(raw)
        for _ in BAD_FRAMES:
            await expect_error(client, 400)
        await client.subscribe(channel)
        await ping_pong(client)


async def test_oversized_frame_is_413_and_the_connection_survives(gateway: Gateway) -> None:
    # REALTIME_MAX_FRAME_BYTES defaults to 65536.
    frame = json.dumps({"type": "ping", "pad": "x" * 70_000})
    async with connect(gateway.ws_url) as client:
        await client.send_raw(frame)
        error = await expect_error(client, 413)
        assert str(len(frame)) in error["data"]["message"]
        assert "65536" in error["data"]["message"]
        await ping_pong(client)


async def test_frame_far_over_the_limit_closes_with_1009(gateway: Gateway) -> None:
    # Over four times the frame limit the transport stops reading it: "message too big".
    async with connect(gateway.ws_url) as client:
        await client.send_raw("x" * (4 * 65_536 + 1024))
        assert await close_code(client) == 1009


# -- Limits (the strict gateway: 3 channels, 5 frames/s in bursts of 5) ---------------------


async def test_too_many_channels_is_429(strict_gateway: Gateway) -> None:
    names = [unique("public.many") for _ in range(4)]
    async with connect(strict_gateway.ws_url) as client:
        for name in names[:3]:
            await client.subscribe(name)
        await client.send(type="subscribe", channel=names[3])
        error = await expect_error(client, 429)
        assert error["channel"] == names[3]
        assert "3 channels" in error["data"]["message"]
        # Leaving one makes room again.
        await client.send(type="unsubscribe", channel=names[0])
        assert (await client.recv())["type"] == "unsubscribed"
        await trio.sleep(0.5)  # a sixth frame: let the 5 frames/s bucket refill
        await client.subscribe(names[3])


async def _pings_until_pong(client: Client, timeout: float = 5) -> None:
    """Ping every 0.25 s until one is answered (the rate limit's bucket refills over time)."""
    with trio.fail_after(timeout):
        while True:
            await client.send(type="ping")
            frame = await client.recv()
            if frame == {"type": "pong"}:
                return
            assert frame["type"] == "error" and frame["data"]["code"] == 429, frame
            await trio.sleep(0.25)


async def test_rate_limit_refuses_with_429_and_the_connection_survives(
    strict_gateway: Gateway,
) -> None:
    async with connect(strict_gateway.ws_url) as client:
        for _ in range(20):
            await client.send(type="ping")
        frames = [await client.recv() for _ in range(20)]
        pongs = [f for f in frames if f == {"type": "pong"}]
        refusals = [f for f in frames if f.get("type") == "error"]
        assert len(pongs) + len(refusals) == 20, frames
        assert 5 <= len(pongs) <= 10, frames  # the burst, plus what refills meanwhile
        assert len(refusals) >= 10, frames
        assert all(f["data"]["code"] == 429 for f in refusals), refusals
        assert "5 frames/s" in refusals[0]["data"]["message"]
        await _pings_until_pong(client)


async def test_continued_flood_closes_with_4029(strict_gateway: Gateway) -> None:
    async with connect(strict_gateway.ws_url) as client:
        try:
            for _ in range(1_000):
                await client.send(type="ping")
        except trio_websocket.ConnectionClosed:
            pass  # closed mid-flood, as it should be
        code = await close_code(client)
        assert code == 4029
        # Refusals are never silent: the flood was answered with 429s before the cut.
        refusals = [f for f in client.seen if f.get("type") == "error"]
        assert refusals, client.seen[:10]
        assert {f["data"]["code"] for f in refusals} == {429}


async def test_a_flood_below_the_threshold_is_forgiven(strict_gateway: Gateway) -> None:
    # Refusals count "in a row": one accepted frame in between starts the count again.
    async with connect(strict_gateway.ws_url) as client:
        for _ in range(3):
            for _ in range(60):
                await client.send(type="ping")
            await _pings_until_pong(client, 10)
        await ping_pong(client, WAIT)
