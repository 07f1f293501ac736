"""The gateway's application logic driven in-process over the memory transport (fast tier)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
from dependency_injector import providers

from tidings.adapters.jwt_tokens import JwtTokens
from tidings.adapters.memory import MemoryBroker, MemoryClient, MemoryTransport
from tidings.application.gateway import Gateway, Limits
from tidings.application.realtime import RealtimeService
from tidings.bootstrap import Container
from tidings.config import Settings
from tidings.domain import AccessPolicy, Message
from tidings.domain.protocol import CloseCode
from tidings.ports import ConnectionClosed

SECRET = "in-process-" + "z" * 32


@attrs.define
class Rig:
    broker: MemoryBroker
    transport: MemoryTransport
    gateway: Gateway
    realtime: RealtimeService
    tokens: JwtTokens

    async def client(self, user: str | None = None, **info: object) -> MemoryClient:
        token = self.tokens.issue(user, info=info or None) if user else None
        client = await self.transport.connect(token)
        connected = await client.receive()
        assert connected["type"] == "connected"
        return client


RULES = "private-room.*=authenticated;presence-room.*=authenticated"


@asynccontextmanager
async def rig(
    limits: Limits | None = None, history: int = 100, policy: object = None
) -> AsyncIterator[Rig]:
    """A gateway built by the composition root on the memory broker, as ``tidings serve``
    builds it, served over the in-memory transport; ``limits`` and ``policy`` override the
    container's providers."""
    settings = Settings.load(
        env_file=None,
        realtime_broker="memory",
        realtime_secret=SECRET,
        realtime_channel_rules=RULES,
        realtime_history_size=history,
        realtime_node_id="n1",
    )
    container = Container.for_settings(settings)
    if limits is not None:
        container.limits.override(providers.Object(limits))
    if policy is not None:
        container.policy.override(providers.Object(policy))
    gateway = container.gateway()
    transport = MemoryTransport()
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(gateway.run)
            nursery.start_soon(transport.serve, gateway.handle)
            yield Rig(
                container.memory_broker(),
                transport,
                gateway,
                container.realtime(),
                container.tokens(),
            )
            nursery.cancel_scope.cancel()
    finally:
        container.shutdown_resources()


async def _subscribe(client: MemoryClient, channel: str, since: str | None = None) -> dict:
    frame = {"type": "subscribe", "channel": channel}
    if since:
        frame["since"] = since
    await client.send(frame)
    reply = await client.receive()
    assert reply["type"] == "subscribed", reply
    return reply


async def _events(client: MemoryClient, count: int) -> list[dict]:
    found = []
    with trio.fail_after(5):
        while len(found) < count:
            frame = await client.receive()
            if frame["type"] == "event":
                found.append(frame)
    return found


async def test_resume_replays_the_gap_then_goes_live_without_duplicates() -> None:
    async with rig() as r:
        first = await r.client()
        await _subscribe(first, "public.feed")
        r.realtime.broadcast("public.feed", "e", 0)
        (seen,) = await _events(first, 1)
        await first.close()
        for i in range(1, 6):
            r.realtime.broadcast("public.feed", "e", i)
        second = await r.client()
        await _subscribe(second, "public.feed", since=seen["position"])
        r.realtime.broadcast("public.feed", "e", 6)
        got = await _events(second, 6)
        assert [frame["data"] for frame in got] == [1, 2, 3, 4, 5, 6]
        positions = [frame["position"] for frame in got]
        assert len(set(positions)) == 6


async def test_resume_from_the_subscribed_position_when_nothing_was_received() -> None:
    async with rig() as r:
        first = await r.client()
        subscribed = await _subscribe(first, "public.quiet")
        await first.close()
        r.realtime.broadcast("public.quiet", "e", "while away")
        second = await r.client()
        await _subscribe(second, "public.quiet", since=subscribed["data"]["position"])
        (frame,) = await _events(second, 1)
        assert frame["data"] == "while away"


async def test_resume_past_history_is_410_and_the_subscription_stays_live() -> None:
    async with rig(history=3) as r:
        first = await r.client()
        subscribed = await _subscribe(first, "public.h")
        for i in range(10):
            r.realtime.broadcast("public.h", "e", i)
        second = await r.client()
        await _subscribe(second, "public.h", since=subscribed["data"]["position"])
        error = await second.receive()
        assert error["type"] == "error" and error["data"]["code"] == 410
        assert error["channel"] == "public.h"
        r.realtime.broadcast("public.h", "e", "live")
        (frame,) = await _events(second, 1)
        assert frame["data"] == "live"


async def test_a_client_that_stops_reading_is_cut_and_others_keep_everything() -> None:
    async with rig(Limits(queue_size=150)) as r:
        slow = await r.client()
        fast = await r.client()
        await _subscribe(slow, "public.burst")
        await _subscribe(fast, "public.burst")
        async with trio.open_nursery() as nursery:
            received: list[dict] = []

            async def read_all() -> None:
                received.extend(await _events(fast, 600))

            nursery.start_soon(read_all)
            for i in range(600):
                await r.realtime.abroadcast("public.burst", "e", i)
        assert [frame["data"] for frame in received] == list(range(600))
        with trio.fail_after(5):
            try:
                while True:
                    await slow.receive()
            except ConnectionClosed as closed:
                assert closed.code == CloseCode.SLOW_CONSUMER


async def test_a_frame_is_measured_in_bytes_not_characters() -> None:
    """ASCII frames are counted by length (no copy); any other text by its UTF-8 bytes."""
    async with rig(Limits(max_frame_bytes=1000)) as r:
        client = await r.client()
        await client.send(json.dumps({"type": "ping", "pad": "x" * 900}))
        assert (await client.receive())["type"] == "pong"
        wide = json.dumps({"type": "ping", "pad": "\u00e9" * 900}, ensure_ascii=False)
        assert len(wide) < 1000 < len(wide.encode())
        await client.send(wide)
        error = await client.receive()
        assert error["type"] == "error" and error["data"]["code"] == 413, error
        assert str(len(wide.encode())) in error["data"]["message"]


async def test_presence_members_join_and_leave_across_connections() -> None:
    async with rig() as r:
        ann = await r.client("1", name="Ann")
        joined = await _subscribe(ann, "presence-room.1")
        assert joined["data"]["members"] == [{"user_id": "1", "user_info": {"name": "Ann"}}]
        bob = await r.client("2", name="Bob")
        bob_sub = await _subscribe(bob, "presence-room.1")
        assert [m["user_id"] for m in bob_sub["data"]["members"]] == ["1", "2"]
        join = (await _events(ann, 1))[0]
        assert (join["event"], join["data"]["user_id"]) == ("presence.join", "2")
        bob_tab = await r.client("2", name="Bob")
        await _subscribe(bob_tab, "presence-room.1")
        await bob.close()
        await bob_tab.close()
        leave = (await _events(ann, 1))[0]  # one leave, after the last tab, and no second join
        assert (leave["event"], leave["data"]["user_id"]) == ("presence.leave", "2")


async def test_client_events_reach_the_others_but_not_the_sender() -> None:
    async with rig() as r:
        ann = await r.client("1")
        bob = await r.client("2")
        await _subscribe(ann, "private-room.9")
        await _subscribe(bob, "private-room.9")
        await ann.send(
            {
                "type": "event",
                "channel": "private-room.9",
                "event": "client-typing",
                "data": {"on": True},
            }
        )
        (frame,) = await _events(bob, 1)
        assert frame["event"] == "client-typing" and frame["data"] == {"on": True}
        await ann.send({"type": "ping"})
        assert (await ann.receive())["type"] == "pong"  # nothing came back to the sender first


async def test_exclude_skips_exactly_that_connection() -> None:
    async with rig() as r:
        one = await r.client()
        two = await r.client()
        await _subscribe(one, "public.x")
        await _subscribe(two, "public.x")
        await one.send({"type": "ping"})
        await one.receive()
        excluded = r.gateway.hub.sessions
        first_id = next(s.id for s in excluded.values() if s.connection.remote.endswith("-1"))
        r.realtime.publish(Message.event("public.x", "e", "not for one", exclude=first_id))
        r.realtime.broadcast("public.x", "e", "for all")
        assert [f["data"] for f in await _events(two, 2)] == ["not for one", "for all"]
        assert [f["data"] for f in await _events(one, 1)] == ["for all"]


async def test_stop_closes_every_client_with_going_away() -> None:
    async with rig() as r:
        client = await r.client()
        await _subscribe(client, "public.bye")
        r.gateway.stop()
        with trio.fail_after(5):
            await r.gateway.wait_drained()
            try:
                while True:
                    await client.receive()
            except ConnectionClosed as closed:
                assert closed.code == CloseCode.GOING_AWAY


class ExplodingPolicy:
    """The usual rules, except that deciding on ``public.boom`` raises: a bug, as far as the
    gateway can tell."""

    def __init__(self) -> None:
        self._policy = AccessPolicy.parse(RULES)

    def decide(self, identity: object, channel: object) -> object:
        if getattr(channel, "name", None) == "public.boom":
            raise RuntimeError("a bug in the access policy")
        return self._policy.decide(identity, channel)  # type: ignore[arg-type]


async def test_an_unexpected_error_closes_that_connection_alone_with_1011() -> None:
    async with rig(policy=ExplodingPolicy()) as r:
        bystander = await r.client()
        await _subscribe(bystander, "public.feed")
        victim = await r.client()
        await victim.send({"type": "subscribe", "channel": "public.boom"})
        with trio.fail_after(5):
            try:
                while True:
                    await victim.receive()
            except ConnectionClosed as closed:
                assert closed.code == CloseCode.INTERNAL_ERROR
        r.realtime.broadcast("public.feed", "e", "after")
        (event,) = await _events(bystander, 1)
        assert event["data"] == "after"
        body, _ = r.gateway.metrics.render()
        assert b"tidings_connections_failed_total 1.0" in body


NEVER_REFILLS = 1e-9
"""A rate (per second) at which a bucket gains no token within any test."""


async def _closed_with(client: MemoryClient) -> int:
    """The close code the client is sent, skipping the frames before it."""
    with trio.fail_after(5):
        try:
            while True:
                await client.receive()
        except ConnectionClosed as closed:
            return closed.code


async def test_presence_joins_past_the_burst_are_429() -> None:
    async with rig(Limits(presence_burst=2, presence_rate=NEVER_REFILLS)) as r:
        client = await r.client("1")
        await _subscribe(client, "presence-room.a")
        await _subscribe(client, "presence-room.b")
        await client.send({"type": "subscribe", "channel": "presence-room.c"})
        refused = await client.receive()
        assert refused["type"] == "error" and refused["data"]["code"] == 429, refused
        assert refused["channel"] == "presence-room.c"
        await _subscribe(client, "public.not-presence")  # only presence joins are limited


async def test_presence_joins_refill_at_the_presence_rate() -> None:
    """A bucket of one join that refills at once lets every join through: without the rate,
    the second would be refused."""
    async with rig(Limits(presence_burst=1, presence_rate=1e12)) as r:
        client = await r.client("1")
        for room in "abcd":
            await _subscribe(client, f"presence-room.{room}")


async def test_a_client_is_cut_with_4029_after_flood_refusals_refusals() -> None:
    async with rig(Limits(rate=NEVER_REFILLS, burst=1, flood_refusals=3)) as r:
        client = await r.client()
        await client.send({"type": "ping"})
        assert (await client.receive())["type"] == "pong"
        for _ in range(3):
            await client.send({"type": "ping"})
            refused = await client.receive()
            assert refused["type"] == "error" and refused["data"]["code"] == 429, refused
        await client.send({"type": "ping"})
        assert await _closed_with(client) == CloseCode.FLOODING


async def test_broadcasts_in_a_serving_process_raise_no_memory_broker_warning(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The gateway's feed reads the memory broker, so a broadcast here reaches somebody: the
    warning for broadcasts nobody reads must stay silent, with clients or without."""
    with caplog.at_level(logging.WARNING, logger="tidings.memory"):
        async with rig() as r:
            r.realtime.broadcast("public.quiet", "e", 0)
            client = await r.client()
            await _subscribe(client, "public.quiet")
            r.realtime.broadcast("public.quiet", "e", 1)
            [frame] = await _events(client, 1)
            assert frame["data"] == 1
    assert [record for record in caplog.records if record.name == "tidings.memory"] == []


def _not_published(message: Message) -> Any:
    raise AssertionError(f"nothing publishes here, not {message}")


async def test_livez_stays_200_while_healthz_turns_503_during_the_drain() -> None:
    from tidings.application.gateway.http_api import GatewayHttp
    from tidings.ports import HttpRequest

    async with rig() as r:
        http = GatewayHttp(
            gateway=r.gateway,
            publish=_not_published,
            api_key=None,
            static=lambda path: None,
            broker="memory",
        )
        client = await r.client()
        assert (await http.handle(HttpRequest("GET", "/healthz"))).status == 200
        r.gateway.stop()  # the drain: sessions are told 1001, the feed finishes its batch
        healthz = await http.handle(HttpRequest("GET", "/healthz"))
        livez = await http.handle(HttpRequest("GET", "/livez"))
        assert healthz.status == 503 and b'"stopping"' in healthz.body
        assert livez.status == 200 and livez.body == b'{"status":"alive","node":"n1"}'
        with pytest.raises(ConnectionClosed):
            while True:
                await client.receive()
