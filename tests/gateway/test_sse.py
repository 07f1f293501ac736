"""Server-Sent Events (``GET /sse``): the WebSocket path's rules, as a receive-only stream.

Each event's ``data`` is the WebSocket frame; a message is an unnamed event, the others are
named after their type; every event that moves a position carries the stream's whole resume
state as its ``id`` (ADR 0031), so ``Last-Event-ID`` resumes every channel exactly.
"""

from __future__ import annotations

import json
import secrets
import shutil
import signal
import subprocess

import httpx
import pytest
import trio

from tests.support.processes import Gateway
from tests.support.sse import EventStream, open_stream
from tests.support.wsclient import connect

from .conftest import Gateways
from .support import WAIT, auth, broadcast, overflows, token, unique


def _positions(event_id: str | None) -> dict[str, str]:
    assert event_id, "the event has no id"
    return dict(part.rsplit("=", 1) for part in event_id.split("~"))


async def _opened(stream: EventStream, *channels: str) -> None:
    """Read the stream's opening: the retry advice, ``connected``, one ``subscribed`` each."""
    assert stream.status == 200, stream.body
    assert stream.headers["content-type"].startswith("text/event-stream")
    first = await stream.next(WAIT)
    assert first is not None and first.retry is not None and 1000 <= first.retry <= 3000
    connected = await stream.next(WAIT)
    assert connected is not None and connected.event == "connected"
    for channel in channels:
        subscribed = await stream.next(WAIT)
        assert subscribed is not None and subscribed.event == "subscribed", subscribed
        assert subscribed.data["channel"] == channel
        assert _positions(subscribed.id)[channel] == subscribed.data["data"]["position"]


async def test_events_carry_id_event_and_data(gateway: Gateway) -> None:
    news, sport = unique("public.news"), unique("public.sport")
    async with open_stream(gateway.url, f"{news},{sport}") as stream:
        await _opened(stream, news, sport)
        sent = await broadcast(gateway, news, "headline", {"n": 1})
        [event] = await stream.events(1, WAIT)
        assert event.event == "message"  # unnamed: EventSource.onmessage sees it
        assert event.data["type"] == "event" and event.data["event"] == "headline"
        assert event.data["data"] == {"n": 1} and event.data["position"] == sent["position"]
        positions = _positions(event.id)
        assert positions[news] == sent["position"] and set(positions) == {news, sport}


async def test_last_event_id_resumes_every_channel_exactly(gateway: Gateway) -> None:
    a, b = unique("public.a"), unique("public.b")
    async with open_stream(gateway.url, f"{a},{b}") as stream:
        await _opened(stream, a, b)
        await broadcast(gateway, a, "e", "a1")
        await broadcast(gateway, b, "e", "b1")
        await stream.events(2, WAIT)
        last = stream.last_id
    for data in ("a2", "b2", "a3"):
        await broadcast(gateway, a if data.startswith("a") else b, "e", data)
    async with open_stream(gateway.url, f"{a},{b}", last_event_id=last) as stream:
        assert stream.status == 200
        await broadcast(gateway, b, "e", "b3")
        got = [event.data["data"] for event in await stream.events(4, WAIT)]
        assert sorted(got) == ["a2", "a3", "b2", "b3"]  # nothing lost, nothing twice
        assert got.index("a2") < got.index("a3") and got.index("b2") < got.index("b3")
        await broadcast(gateway, a, "e", "a4")
        [live] = await stream.events(1, WAIT)
        assert live.data["data"] == "a4"
        last = stream.last_id
    # The query parameter stands for the header (a page's EventSource cannot set headers).
    await broadcast(gateway, a, "e", "a5")
    async with open_stream(gateway.url, f"{a},{b}", query={"lastEventId": last or ""}) as stream:
        [event] = await stream.events(1, WAIT)
        assert event.data["data"] == "a5"


async def test_resume_before_any_message_misses_nothing(gateway: Gateway) -> None:
    channel = unique("public.quiet")
    async with open_stream(gateway.url, channel) as stream:
        await _opened(stream, channel)
        last = stream.last_id  # the subscribed event's: where the channel stood
    await broadcast(gateway, channel, "e", "while away")
    async with open_stream(gateway.url, channel, last_event_id=last) as stream:
        [event] = await stream.events(1, WAIT)
        assert event.data["data"] == "while away"


async def test_a_position_that_cannot_resume_is_a_410_error_event_then_live(
    gateway: Gateway,
) -> None:
    mine, other = unique("public.mine"), unique("public.other")
    foreign = (await broadcast(gateway, other, "e", "elsewhere"))["position"]
    async with open_stream(gateway.url, mine, last_event_id=f"{mine}={foreign}") as stream:
        error = await stream.until("error", WAIT)
        assert error.data["channel"] == mine and error.data["data"]["code"] == 410
        assert foreign in error.data["data"]["message"]
        await broadcast(gateway, mine, "e", "live")
        [event] = await stream.events(1, WAIT)
        assert event.data["data"] == "live"


@pytest.mark.parametrize(
    ("channels", "extra", "status", "words"),
    [
        (None, {}, 400, "parameter 'channels'"),
        ("a b", {}, 400, "invalid channel 'a b'"),
        ("public.x", {"last-event-id": "yesterday"}, 400, "Last-Event-ID 'yesterday'"),
        ("private-team.x", {}, 401, "needs a token"),
        ("public.x", {"authorization": "Bearer not-a-token"}, 401, "token"),
        ("public.x", {"authorization": "Basic eDp5"}, 400, "Authorization: Bearer"),
    ],
)
async def test_refusals_are_http_errors_with_reasons(
    gateway: Gateway, channels: str | None, extra: dict[str, str], status: int, words: str
) -> None:
    async with open_stream(gateway.url, channels, headers=extra) as stream:
        assert stream.status == status, stream.body
        assert words in stream.body.decode(), stream.body


async def test_authorization_as_on_websocket(gateway: Gateway) -> None:
    admin = unique("private-admin")  # the gateway's rules: private-admin.* is user 1's alone
    async with open_stream(gateway.url, admin, token=token("2")) as stream:
        assert stream.status == 403, stream.body
        refusal = json.loads(stream.body)
        assert refusal["channel"] == admin and admin in refusal["error"]
        assert refusal["code"] == 403
    bearer = {"authorization": f"Bearer {token('1')}"}
    async with open_stream(gateway.url, admin, headers=bearer) as stream:
        await _opened(stream, admin)
    async with open_stream(
        gateway.url, admin, token=token("1"), headers={"authorization": f"Bearer {token('1')}"}
    ) as stream:
        assert stream.status == 400 and b"not both" in stream.body


async def test_origin_is_checked_and_allowed_ones_get_cors(gateway: Gateway) -> None:
    evil = {"origin": "https://evil.example"}
    async with open_stream(gateway.url, "public.x", headers=evil) as stream:
        assert stream.status == 403
        assert b"REALTIME_ALLOWED_ORIGINS" in stream.body
    own = {"origin": gateway.url}
    async with open_stream(gateway.url, unique("public.x"), headers=own) as stream:
        assert stream.status == 200
        assert stream.headers["access-control-allow-origin"] == gateway.url


async def test_channel_limit_and_heartbeats_under_the_idle_timeout(
    strict_gateway: Gateway,
) -> None:
    # The strict gateway: 3 channels a connection, REALTIME_IDLE_TIMEOUT=2.
    async with open_stream(strict_gateway.url, "a,b,c,d") as stream:
        assert stream.status == 400 and b"over the limit of 3" in stream.body
    channel = unique("public.hb")
    async with open_stream(strict_gateway.url, channel) as stream:
        await _opened(stream, channel)
        start = trio.current_time()
        pings = 0
        while trio.current_time() - start < 4:  # twice the idle timeout: the stream stays
            event = await stream.next(2, comments=True)
            assert event is not None and event.comment == "ping", event
            pings += 1
        assert pings >= 3
        await broadcast(strict_gateway, channel, "e", "still here")
        [event] = await stream.events(1, WAIT)
        assert event.data["data"] == "still here"


async def test_a_token_that_expires_ends_the_stream_with_4001(gateway: Gateway) -> None:
    channel = unique("public.expiring")
    async with open_stream(gateway.url, channel, token=token("7", ttl=2)) as stream:
        await _opened(stream, channel)
        goodbye = await stream.until("disconnect", WAIT)
        assert goodbye.data["code"] == 4001 and goodbye.data["advice"] == "new-token"
        assert await stream.next(WAIT) is None


async def test_presence_an_sse_subscriber_is_a_member(gateway: Gateway) -> None:
    room = unique("presence-chat")
    async with connect(gateway.ws_url, token("ws-user")) as member:
        await member.subscribe(room)
        async with open_stream(gateway.url, room, token=token("sse-user")) as stream:
            assert stream.status == 200
            await stream.until("connected", WAIT)
            subscribed = await stream.until("subscribed", WAIT)
            members = subscribed.data["data"]["members"]
            assert sorted(m["user_id"] for m in members) == ["sse-user", "ws-user"]
            joined = await member.expect(WAIT, type="event", event="presence.join")
            assert joined["data"]["user_id"] == "sse-user"
        left = await member.expect(WAIT, type="event", event="presence.leave")
        assert left["data"]["user_id"] == "sse-user"


MESSAGES = 2_000


async def test_a_stream_that_stops_reading_is_cut_and_others_get_everything(
    small_queue_gateway: Gateway,
) -> None:
    """A reader that keeps up may still be cut when the gateway drains a Kafka backlog faster
    than it parses (see test_slow_consumer.py): it then resumes from its last id, and must
    see neither a gap nor a duplicate."""
    # Queues of 50 frames (REALTIME_QUEUE_SIZE=50).
    gateway = small_queue_gateway
    channel = unique("public.sse-firehose")
    blob = secrets.token_hex(1024)
    before = await overflows(gateway)
    received: list[int] = []

    async def keep_up() -> None:
        last: str | None = None
        while len(received) < MESSAGES:
            async with open_stream(gateway.url, channel, last_event_id=last) as fast:
                if last is None:
                    await _opened(fast, channel)
                    fast_ready.set()
                while len(received) < MESSAGES:
                    event = await fast.next(WAIT)
                    if event is None:
                        break  # cut: resume from the last id
                    if event.event == "message":
                        received.append(event.data["data"]["n"])
                last = fast.last_id

    fast_ready = trio.Event()
    async with open_stream(gateway.url, channel) as slow:
        await _opened(slow, channel)
        async with trio.open_nursery() as nursery:
            nursery.start_soon(keep_up)
            await fast_ready.wait()
            with httpx.Client(base_url=gateway.url, headers=auth(), timeout=WAIT) as http:
                for start in range(0, MESSAGES, 10):
                    batch = [
                        {"channel": channel, "event": "e", "data": {"n": n, "blob": blob}}
                        for n in range(start, start + 10)
                    ]
                    response = await trio.to_thread.run_sync(
                        lambda b=batch: http.post("/broadcast", json=b)
                    )
                    assert response.status_code == 200
        assert received == list(range(MESSAGES))
        # The fast one had every message, so each was handed to the slow one's queue too.
        assert await overflows(gateway) > before, "the gateway counted no slow consumer"
        # The slow one, reading at last, finds its stream ended after a part of it.
        got = 0
        while (event := await slow.next(WAIT)) is not None:
            got += event.event == "message"
        assert got < MESSAGES


async def test_sigterm_ends_streams_with_going_away(doomed_gateway: Gateway) -> None:
    gateway = doomed_gateway
    channel = unique("public.sse-shutdown")
    async with open_stream(gateway.url, channel) as stream:
        await _opened(stream, channel)
        gateway.signal(signal.SIGTERM)
        goodbye = await stream.until("disconnect", WAIT)
        assert goodbye.data == {"code": 1001, "reason": "gateway shutting down", "advice": "resume"}
        assert await stream.next(WAIT) is None  # the response ended
    assert await trio.to_thread.run_sync(gateway.wait) == 0


async def test_connection_limits_count_streams(gateways: Gateways) -> None:
    gateway = gateways.start(REALTIME_MAX_CONNECTIONS_PER_IP="2")
    try:
        async with (
            open_stream(gateway.url, "public.one") as one,
            open_stream(gateway.url, "public.two") as two,
        ):
            assert one.status == two.status == 200
            async with open_stream(gateway.url, "public.three") as three:
                assert three.status == 429 and b"the limit" in three.body
    finally:
        gateways.stop(gateway)


async def test_curl_follows_a_stream(gateway: Gateway) -> None:
    assert shutil.which("curl"), "no curl: the base image has it (apt-get install curl)"
    channel = unique("public.curl")
    url = f"{gateway.url}/sse?channels={channel}"
    process = await trio.lowlevel.open_process(
        ["curl", "--silent", "--no-buffer", "--max-time", str(int(WAIT)), url],
        stdout=subprocess.PIPE,
    )
    assert process.stdout is not None
    text = ""
    try:
        with trio.fail_after(WAIT):
            while "event: subscribed" not in text:
                text += (await process.stdout.receive_some(4096)).decode()
            sent = await broadcast(gateway, channel, "e", "to curl")
            while sent["position"] not in text.split("event: subscribed", 1)[1]:
                text += (await process.stdout.receive_some(4096)).decode()
    finally:
        process.terminate()
        await process.wait()
    assert f"id: {channel}={sent['position']}\ndata: " in text
    assert '"data":"to curl"' in text
