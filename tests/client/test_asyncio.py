"""``tidings.client`` under asyncio: the same client, run in trio's guest mode (ADR 0030).

Each test runs its scenario with ``asyncio.run`` inside a plain test function: pytest-trio's
``trio_mode`` owns the async tests of this suite.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import pytest

import tidings.client
from tests.support.processes import Gateway
from tests.support.proxy import TcpProxy
from tidings.adapters.jwt_tokens import JwtTokens
from tidings.client import Event, State, Subscription, connect

from .support import FAST, WAIT, port_of, publish, token, unique

T = TypeVar("T")


def run(scenario: Callable[[], Awaitable[T]]) -> T:
    """``asyncio.run`` the scenario, and check that it left no asyncio task behind."""

    async def main() -> T:
        result = await scenario()
        others = asyncio.all_tasks() - {asyncio.current_task()}
        assert not others, f"tasks left behind: {others}"
        return result

    return asyncio.run(main())


async def published(gateway: Gateway, channel: str, *data: Any) -> list[dict[str, Any]]:
    return await asyncio.to_thread(publish, gateway, channel, *data)


async def take(sub: Subscription, count: int, timeout: float = WAIT) -> list[Event]:
    events: list[Event] = []
    async with asyncio.timeout(timeout):
        async for event in sub:
            events.append(event)
            if len(events) == count:
                break
    return events


class States:
    """An ``on_state`` callback that keeps every state, and waits for one (asyncio)."""

    def __init__(self) -> None:
        self.seen: list[State] = []
        self._changed = asyncio.Event()

    def __call__(self, change: tidings.client.StateChange) -> None:
        self.seen.append(change.state)  # called on the loop's thread, in a guest tick
        self._changed.set()
        self._changed = asyncio.Event()

    async def reach(self, state: State, timeout: float = WAIT) -> None:
        async with asyncio.timeout(timeout):
            while not self.seen or self.seen[-1] is not state:
                await self._changed.wait()


def test_receive_in_order_through_a_dropped_connection(live_gateway: Gateway) -> None:
    channel = unique("public.asyncio")
    proxy = TcpProxy(port_of(live_gateway))

    async def scenario() -> None:
        states = States()
        async with connect(proxy.ws_url, on_state=states, **FAST) as client:
            sub = await client.subscribe(channel)
            first = await published(live_gateway, channel, "a0", "a1")
            got = await take(sub, 2)
            assert [e.data for e in got] == ["a0", "a1"]
            assert [e.position for e in got] == [answer["position"] for answer in first]

            # Cancelling a wait loses nothing: the event it would have got comes next.
            with pytest.raises(TimeoutError):
                async with asyncio.timeout(0.2):
                    await sub.__anext__()

            proxy.refuse()
            await states.reach(State.RECONNECTING)
            missed = await published(live_gateway, channel, "b0", "b1", "b2")
            proxy.accept()
            replayed = await take(sub, 3)
            assert [e.data for e in replayed] == ["b0", "b1", "b2"]
            assert [e.position for e in replayed] == [m["position"] for m in missed]
            await published(live_gateway, channel, "c0")
            assert [e.data for e in await take(sub, 1)] == ["c0"]
            assert proxy.accepted == 2

    try:
        run(scenario)
    finally:
        proxy.close()


def test_two_clients_presence_and_client_events(live_gateway: Gateway) -> None:
    room = unique("presence-chat")
    grants = ("presence-**",)
    asked: list[str] = []

    async def ann_token() -> str:  # an asyncio coroutine, awaited in the caller's loop
        await asyncio.sleep(0)
        asked.append("ann")
        return token("1", info={"name": "Ann"}, channels=grants)

    async def scenario() -> None:
        async with connect(live_gateway.ws_url, token=ann_token) as ann:
            ann_room = await ann.subscribe(room)
            assert ann_room.members == {"1": {"name": "Ann"}}
            await published(live_gateway, room, "opened")  # creates the topic on Kafka
            assert [e.data for e in await take(ann_room, 1)] == ["opened"]
            bob_token = token("2", info={"name": "Bob"}, channels=grants)
            async with connect(live_gateway.ws_url, token=bob_token) as bob:
                bob_room = await bob.subscribe(room)
                assert set(bob_room.members) == {"1", "2"}
                [join] = await take(ann_room, 1)
                assert join.event == "presence.join" and join.data["user_id"] == "2"
                assert await bob_room.trigger("client-wave", {"hand": "right"}) is True
                [wave] = await take(ann_room, 1)
                assert (wave.event, wave.data, wave.user_id) == (
                    "client-wave",
                    {"hand": "right"},
                    "2",
                )
            [leave] = await take(ann_room, 1)
            assert leave.event == "presence.leave" and leave.data["user_id"] == "2"
            assert ann_room.members == {"1": {"name": "Ann"}}
        assert ann.state is State.CLOSED
        assert asked == ["ann"]

    run(scenario)


@pytest.mark.parametrize("broker_env", ["memory"], indirect=True)
def test_refused_token_and_forbidden_channel_are_typed(live_gateway: Gateway) -> None:
    forged = JwtTokens("another-secret-" + "y" * 32).issue("1")

    async def scenario() -> None:
        async with connect(live_gateway.ws_url, token=forged, **FAST) as client:
            with pytest.raises(tidings.client.TokenRefused):
                await client.wait_connected()
            assert client.state is State.FAILED and client.attempts == 1
        async with connect(live_gateway.ws_url, token=token("1")) as client:
            with pytest.raises(tidings.client.Forbidden) as refused:
                await client.subscribe("user.2")
            assert refused.value.channel == "user.2"
            assert (await client.subscribe("user.1")).state == "subscribed"

    run(scenario)
    run(scenario)  # a second loop gets a guest run of its own


def test_a_client_from_asyncio_refuses_use_from_trio(closed_port: int) -> None:
    import trio

    async def opened() -> tidings.client.Client:
        async with connect(f"ws://127.0.0.1:{closed_port}/ws", max_retries=0) as client:
            return client

    client = asyncio.run(opened())

    async def from_trio() -> None:
        with pytest.raises(RuntimeError, match="opened under asyncio"):
            await client.subscribe("public.x")

    trio.run(from_trio)
