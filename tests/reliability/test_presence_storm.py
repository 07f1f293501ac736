"""A client that joins and leaves a presence channel in a loop cannot make the gateway storm its
members: joins are limited per connection (REALTIME_PRESENCE_JOIN_RATE / _BURST), refusals are
429 error frames, and every join the members hear is followed by exactly one leave."""

from __future__ import annotations

import json
from collections import Counter

import trio

from tests.support.wsclient import connect

from .conftest import WAIT, record, running_gateway, token, wait_until

MEMBERS = 30
PAIRS = 239  # 478 frames, as in the finding of issue 12
BURST = 10
RATE = 1.0


async def test_join_leave_churn_reaches_members_only_within_the_presence_limit() -> None:
    channel = "presence-chat.storm"
    with running_gateway(
        REALTIME_RATE_LIMIT="100000",  # the frame rate limit is not what this test is about
        REALTIME_RATE_BURST="100000",
        REALTIME_PRESENCE_JOIN_BURST=str(BURST),
        REALTIME_PRESENCE_JOIN_RATE=str(RATE),
    ) as gateway:
        heard: list[Counter[str]] = [Counter() for _ in range(MEMBERS)]
        async with trio.open_nursery() as nursery:
            members = []
            for index in range(MEMBERS):
                member = await nursery.start(_member, gateway.ws_url, index, channel, heard[index])
                members.append(member)
            replies: Counter[str] = Counter()
            async with connect(gateway.ws_url, token("666")) as churner:
                started = trio.current_time()
                for _ in range(PAIRS):
                    await churner.send_raw(json.dumps({"type": "subscribe", "channel": channel}))
                    await churner.send_raw(json.dumps({"type": "unsubscribe", "channel": channel}))
                while sum(replies.values()) < 2 * PAIRS:
                    frame = await churner.recv(WAIT)
                    kind = frame["type"]
                    replies[f"error {frame['data']['code']}" if kind == "error" else kind] += 1
                elapsed = trio.current_time() - started
            joins = replies["subscribed"]
            await wait_until(
                lambda: all(h["presence.leave"] == joins for h in heard),
                WAIT,
                f"every member heard {joins} leaves",
            )
            nursery.cancel_scope.cancel()
        presence_frames = sum(sum(h.values()) for h in heard)
        record(
            "hostile.presence_storm",
            frames_sent=2 * PAIRS,
            joins_served=joins,
            replies=dict(replies),
            presence_frames_to_members=presence_frames,
            seconds=round(elapsed, 2),
        )
        assert joins <= BURST + RATE * elapsed + 1, (joins, elapsed)
        assert replies["error 429"] == PAIRS - joins, replies
        assert replies["unsubscribed"] == joins and replies["error 404"] == PAIRS - joins
        assert all(h["presence.join"] == joins for h in heard), heard
        assert presence_frames == 2 * joins * MEMBERS


async def _member(
    url: str,
    index: int,
    channel: str,
    heard: Counter[str],
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    async with connect(url, token(f"m{index}")) as member:
        await member.subscribe(channel)
        task_status.started()
        while True:
            frame = await member.recv(3600)
            member.seen.clear()
            if frame["type"] == "event" and frame["data"].get("user_id") == "666":
                heard[frame["event"]] += 1
