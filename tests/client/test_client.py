"""``tidings.client`` under trio, against real gateways on each broker (docs/python-client.md)."""

from __future__ import annotations

import ssl

import pytest
import trio

import tidings.client
from tests.conftest import API_KEY, SECRET
from tests.gateway.support import overflows
from tests.support.processes import Gateway, process_env
from tests.support.proxy import TcpProxy
from tidings.adapters.jwt_tokens import JwtTokens
from tidings.client import Event, State, Subscription, connect
from tidings.domain.errors import InvalidChannel, InvalidPosition

from .support import FAST, WAIT, port_of, publish, token, unique


async def published(gateway: Gateway, channel: str, *data: object) -> list[dict[str, object]]:
    return await trio.to_thread.run_sync(lambda: publish(gateway, channel, *data))


async def take(sub: Subscription, count: int, timeout: float = WAIT) -> list[Event]:
    events: list[Event] = []
    with trio.fail_after(timeout):
        async for event in sub:
            events.append(event)
            if len(events) == count:
                break
    return events


class States:
    """An ``on_state`` callback that keeps every state, and waits for one."""

    def __init__(self) -> None:
        self.seen: list[State] = []
        self.reasons: list[str] = []
        self._changed = trio.Event()

    def __call__(self, change: tidings.client.StateChange) -> None:
        self.seen.append(change.state)
        if change.reason:
            self.reasons.append(change.reason)
        self._changed.set()
        self._changed = trio.Event()

    async def reach(self, state: State, timeout: float = WAIT) -> None:
        with trio.fail_after(timeout):
            while not self.seen or self.seen[-1] is not state:
                await self._changed.wait()


async def test_events_arrive_in_order_and_iteration_ends_on_unsubscribe(
    live_gateway: Gateway,
) -> None:
    channel = unique("public.feed")
    async with connect(live_gateway.ws_url) as client:
        sub = await client.subscribe(channel)
        assert client.state is State.CONNECTED and client.connection_id
        assert sub.state == "subscribed" and sub.position is not None
        answers = await published(live_gateway, channel, "a", "b", "c")
        got: list[Event] = []
        with trio.fail_after(WAIT):
            async for event in sub:
                got.append(event)
                if len(got) == 3:
                    await sub.unsubscribe()  # the loop ends by itself
        assert [event.data for event in got] == ["a", "b", "c"]
        assert [event.id for event in got] == [answer["id"] for answer in answers]
        assert [event.position for event in got] == [answer["position"] for answer in answers]
        assert {event.channel for event in got} == {channel}
        assert sub.state == "unsubscribed" and channel not in client.subscriptions
        # The connection is still good for another channel.
        other = await client.subscribe(unique("public.other"))
        assert other.state == "subscribed"


async def test_iteration_ends_when_the_client_closes(live_gateway: Gateway) -> None:
    ended = trio.Event()
    async with trio.open_nursery() as nursery:
        async with connect(live_gateway.ws_url) as client:
            sub = await client.subscribe(unique("public.closing"))

            async def read() -> None:
                async for _ in sub:
                    pass
                ended.set()

            nursery.start_soon(read)
        assert client.state is State.CLOSED
        with trio.fail_after(5):
            await ended.wait()
    with pytest.raises(tidings.client.ClientClosed):
        await client.subscribe(unique("public.after"))


async def test_presence_members_join_and_leave(live_gateway: Gateway) -> None:
    room = unique("presence-chat")
    grants = ("presence-**",)
    ann_token = token("1", info={"name": "Ann"}, channels=grants)
    bob_token = token("2", info={"name": "Bob"}, channels=grants)
    async with connect(live_gateway.ws_url, token=ann_token) as ann:
        ann_room = await ann.subscribe(room)
        assert ann_room.is_presence and ann_room.members == {"1": {"name": "Ann"}}
        async with connect(live_gateway.ws_url, token=bob_token) as bob:
            bob_room = await bob.subscribe(room)
            assert bob_room.members == {"1": {"name": "Ann"}, "2": {"name": "Bob"}}
            [join] = await take(ann_room, 1)
            assert join.is_presence and join.event == "presence.join"
            assert join.data == {"user_id": "2", "user_info": {"name": "Bob"}}
            assert join.position is None
            assert ann_room.members == {"1": {"name": "Ann"}, "2": {"name": "Bob"}}
        [leave] = await take(ann_room, 1)
        assert leave.event == "presence.leave" and leave.data["user_id"] == "2"
        assert ann_room.members == {"1": {"name": "Ann"}}


async def test_client_events_reach_the_others_with_the_senders_id(live_gateway: Gateway) -> None:
    room = unique("private-room")
    grants = ("private-**",)
    async with (
        connect(live_gateway.ws_url, token=token("1", channels=grants)) as ann,
        connect(live_gateway.ws_url, token=token("2", channels=grants)) as bob,
    ):
        ann_room = await ann.subscribe(room)
        bob_room = await bob.subscribe(room)
        await published(live_gateway, room, "opened")  # on Kafka this creates the room's topic
        assert [e.data for e in await take(ann_room, 1)] == ["opened"]
        assert [e.data for e in await take(bob_room, 1)] == ["opened"]

        assert await ann_room.trigger("client-typing", {"typing": True}) is True
        [typing] = await take(bob_room, 1)
        assert (typing.event, typing.data, typing.user_id) == (
            "client-typing",
            {"typing": True},
            "1",
        )
        assert typing.position is not None
        # Never back to the sender: Ann's next event is a broadcast made after it.
        await published(live_gateway, room, "after")
        assert [e.data for e in await take(ann_room, 1)] == ["after"]


async def test_resume_after_the_connection_drops_loses_nothing_and_repeats_nothing(
    live_gateway: Gateway,
) -> None:
    channel = unique("public.resume")
    proxy = TcpProxy(port_of(live_gateway))
    states = States()
    try:
        async with connect(proxy.ws_url, on_state=states, **FAST) as client:
            sub = await client.subscribe(channel)
            before = await published(live_gateway, channel, "a0", "a1")
            assert [e.data for e in await take(sub, 2)] == ["a0", "a1"]

            proxy.refuse()  # the network drops, and the gateway stays out of reach a while
            await states.reach(State.RECONNECTING)
            missed = await published(live_gateway, channel, "b0", "b1", "b2")
            proxy.accept()

            replayed = await take(sub, 3)
            assert [e.data for e in replayed] == ["b0", "b1", "b2"]
            assert [e.position for e in replayed] == [m["position"] for m in missed]
            await published(live_gateway, channel, "c0")
            assert [e.data for e in await take(sub, 1)] == ["c0"]
            assert proxy.accepted == 2 and client.state is State.CONNECTED
            # Cut again, with no wait: the resume starts where the client stood.
            proxy.cut()
            await published(live_gateway, channel, "d0")
            assert [e.data for e in await take(sub, 1)] == ["d0"]
            assert before[0]["position"] != sub.position
    finally:
        proxy.close()
    assert State.RECONNECTING in states.seen and states.seen[-1] is State.CLOSED


async def test_a_message_published_twice_with_one_id_arrives_once(live_gateway: Gateway) -> None:
    import httpx

    from tests.conftest import API_KEY

    channel = unique("public.twice")
    envelope = {"channel": channel, "event": "note", "data": "once", "id": "outbox-retry-1"}

    def post_twice() -> None:
        for body in (envelope, envelope, {**envelope, "id": "next", "data": "next"}):
            response = httpx.post(
                live_gateway.url + "/broadcast",
                json=body,
                headers={"authorization": f"Bearer {API_KEY}"},
                timeout=WAIT,
            )
            assert response.status_code == 200, response.text

    async with connect(live_gateway.ws_url) as client:
        sub = await client.subscribe(channel)
        await trio.to_thread.run_sync(post_twice)
        assert [(e.id, e.data) for e in await take(sub, 2)] == [
            ("outbox-retry-1", "once"),
            ("next", "next"),
        ]


async def test_a_position_the_gateway_cannot_resume_from_is_a_gap(live_gateway: Gateway) -> None:
    channel, elsewhere = unique("public.gap"), unique("public.elsewhere")
    [foreign] = await published(live_gateway, elsewhere, "x")
    async with connect(live_gateway.ws_url) as client:
        sub = await client.subscribe(channel, since=str(foreign["position"]))
        with trio.fail_after(WAIT), pytest.raises(tidings.client.Gap) as gap:
            await sub.__anext__()
        assert gap.value.code == 410 and gap.value.channel == channel
        # The subscription stays live: iterating again goes on with what follows.
        await published(live_gateway, channel, "live")
        assert [e.data for e in await take(sub, 1)] == ["live"]


async def test_refusals_are_typed_and_the_connection_stays(live_gateway: Gateway) -> None:
    async with connect(live_gateway.ws_url, token=token("1")) as client:
        with pytest.raises(tidings.client.Forbidden) as refused:
            await client.subscribe("user.2")
        assert refused.value.code == 403 and refused.value.channel == "user.2"
        assert "user.2" not in client.subscriptions
        own = await client.subscribe("user.1")
        assert own.state == "subscribed" and client.user_id == "1"
    async with connect(live_gateway.ws_url) as anonymous:
        with pytest.raises(tidings.client.Unauthorized):
            await anonymous.subscribe("private-team.1")


@pytest.mark.parametrize("broker_env", ["memory"], indirect=True)
async def test_a_refused_token_is_not_retried(live_gateway: Gateway) -> None:
    forged = JwtTokens("another-secret-" + "y" * 32).issue("1")
    async with connect(live_gateway.ws_url, token=forged, **FAST) as client:
        with pytest.raises(tidings.client.TokenRefused) as refused:
            await client.wait_connected()
        assert refused.value.code == 4401
        assert client.state is State.FAILED and client.error is refused.value
        assert client.attempts == 1
        with pytest.raises(tidings.client.TokenRefused):
            await client.subscribe("public.any")

    asked: list[str] = []

    def provider() -> str:
        asked.append(forged)
        return forged

    async with connect(live_gateway.ws_url, token=provider, **FAST) as client:
        with pytest.raises(tidings.client.TokenRefused, match="returned it again"):
            await client.wait_connected()
        # Asked again after the refusal; the same token is never sent twice.
        assert len(asked) == 2 and client.attempts == 1


async def test_an_unreachable_gateway_gives_up_after_max_retries(closed_port: int) -> None:
    url = f"ws://127.0.0.1:{closed_port}/ws"
    changes: list[tidings.client.StateChange] = []
    async with connect(url, max_retries=2, on_state=changes.append, **FAST) as client:
        with trio.fail_after(10), pytest.raises(tidings.client.ConnectionLost) as lost:
            await client.wait_connected()
    assert client.attempts == 3 and "3 failed attempt(s)" in str(lost.value)
    retries = [change for change in changes if change.state is State.RECONNECTING]
    assert len(retries) == 2
    assert all(c.retry_in is not None and 0 < c.retry_in <= 0.2 for c in retries)
    assert all(f"unreachable at {url}" in (c.reason or "") for c in retries)


async def test_bad_arguments_are_refused_with_what_was_wrong(closed_port: int) -> None:
    with pytest.raises(ValueError, match="ftp://"):
        async with connect("ftp://127.0.0.1/ws"):
            pass
    with pytest.raises(ValueError, match="pong_timeout"):
        async with connect("ws://127.0.0.1:1/ws", pong_timeout=0):
            pass
    with pytest.raises(ValueError, match="max_retries"):
        async with connect("ws://127.0.0.1:1/ws", max_retries=-1):
            pass
    with pytest.raises(ValueError, match="ssl_context must be an ssl\\.SSLContext"):
        async with connect("wss://127.0.0.1:1/ws", ssl_context="/etc/ssl/ca.pem"):  # type: ignore[arg-type]
            pass
    with pytest.raises(ValueError, match="ssl_context is for wss://"):
        async with connect("ws://127.0.0.1:1/ws", ssl_context=ssl.create_default_context()):
            pass
    async with connect(f"ws://127.0.0.1:{closed_port}/ws", max_retries=0) as client:
        with pytest.raises(InvalidChannel, match="not allowed"):
            await client.subscribe("no spaces")
        with pytest.raises(InvalidPosition, match="yesterday"):
            await client.subscribe("public.x", since="yesterday")
        with pytest.raises(ValueError, match="private or presence"):
            await client.trigger("public.x", "client-x")
        with pytest.raises(ValueError, match="start with 'client-'"):
            await client.trigger("private-x", "typing")


async def test_a_subscription_nobody_reads_is_cut_as_slow_and_resumes_without_loss() -> None:
    """The buffer fills, the client stops reading, the gateway's queue for it fills and it cuts
    the connection (4008, slow consumer); the client reconnects and resumes from the last
    position it handed out: every message once, in order."""
    gateway = Gateway(
        process_env(
            REALTIME_BROKER="memory",
            REALTIME_SECRET=SECRET,
            REALTIME_API_KEY=API_KEY,
            REALTIME_QUEUE_SIZE="20",
            REALTIME_HISTORY_SIZE="5000",
        )
    )
    try:
        channel = unique("public.flood")
        states = States()
        total, padding = 2000, "x" * 1000  # 2 MB: more than the sockets' buffers hold
        async with connect(gateway.ws_url, buffer=5, on_state=states, **FAST) as client:
            sub = await client.subscribe(channel)
            for start in range(0, total, 100):
                await published(
                    gateway, channel, *({"n": n, "pad": padding} for n in range(start, start + 100))
                )
            got = await take(sub, total, timeout=120)
        assert [event.data["n"] for event in got] == list(range(total))  # type: ignore[index]
        assert State.RECONNECTING in states.seen
        # The cut's close frame waits behind a full socket for a second, then the socket is
        # dropped: a client this far behind may see 1006 rather than 4008 on a busy machine
        # (tests/gateway/test_slow_consumer.py); the gateway's counter says it was cut as slow.
        assert any("4008" in r or "1006" in r for r in states.reasons), states.reasons
        assert await overflows(gateway) >= 1, "the gateway counted no slow consumer"
    finally:
        assert gateway.stop() == 0, gateway.output()
