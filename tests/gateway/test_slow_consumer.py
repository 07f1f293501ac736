"""Backpressure: a client that stops reading is cut off (4008); the others lose nothing (§5).

design.md §5: "A client that stops reading is disconnected with a code that tells it to resume;
memory stays bounded; nothing is lost for the clients that keep up."

A reading client can still fall more than a (deliberately tiny) queue behind when the gateway
drains a Kafka backlog faster than the client parses frames; it is then cut like any slow
client and resumes from its last position. What it must never see is a gap or a duplicate.
"""

from __future__ import annotations

import re
import secrets

import httpx
import trio
import trio_websocket

from tests.support.processes import Gateway
from tests.support.wsclient import Client, connect

from .support import WAIT, aget, auth, close_code, unique

MESSAGES = 2_000
PER_REQUEST = 10
PAYLOAD = 2_048


async def overflows(gateway: Gateway) -> float:
    text = (await aget(gateway, "/metrics")).text
    match = re.search(r"^tidings_queue_overflows_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def test_slow_consumer_is_cut_off_and_the_fast_one_gets_everything(
    small_queue_gateway: Gateway,
) -> None:
    # The gateway queues at most 50 frames per connection (REALTIME_QUEUE_SIZE=50).
    gateway = small_queue_gateway
    channel = unique("public.firehose")
    blob = secrets.token_hex(PAYLOAD // 2)
    cut_before = await overflows(gateway)

    def publish_all() -> None:
        with httpx.Client(base_url=gateway.url, headers=auth(), timeout=WAIT) as http:
            for start in range(0, MESSAGES, PER_REQUEST):
                batch = [
                    {"channel": channel, "event": "e", "data": {"n": n, "blob": blob}}
                    for n in range(start, start + PER_REQUEST)
                ]
                response = http.post("/broadcast", json=batch)
                assert response.status_code == 200, response.text

    async with connect(gateway.ws_url) as fast, connect(gateway.ws_url) as slow:
        await fast.subscribe(channel)
        await slow.subscribe(channel)
        received: list[int] = []
        slow_close: list[int] = []

        async def read_fast() -> None:
            last: str | None = None

            async def read(client: Client) -> None:
                nonlocal last
                while len(received) < MESSAGES:
                    frame = await client.recv(WAIT)
                    assert frame["type"] == "event", frame
                    received.append(frame["data"]["n"])
                    last = frame["position"]

            try:
                await read(fast)
            except trio_websocket.ConnectionClosed as closed:
                assert closed.reason is not None and closed.reason.code == 4008
                while len(received) < MESSAGES:  # cut again? resume again
                    try:
                        async with connect(gateway.ws_url) as again:
                            await again.subscribe(channel, since=last)
                            await read(again)
                    except trio_websocket.ConnectionClosed as closed_again:
                        assert closed_again.reason is not None
                        assert closed_again.reason.code == 4008

        async def read_slow_once_cut() -> None:
            # The slow client reads nothing until the gateway reports it cut off; then it
            # reads what reached it, and the close frame that says why.
            while await overflows(gateway) <= cut_before:  # noqa: ASYNC110 (polls HTTP)
                await trio.sleep(0.05)
            slow_close.append(await close_code(slow, WAIT))

        with trio.fail_after(90):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(trio.to_thread.run_sync, publish_all)
                nursery.start_soon(read_fast)
                nursery.start_soon(read_slow_once_cut)

        assert received == list(range(MESSAGES)), "the fast client lost or reordered messages"
        got = [f["data"]["n"] for f in slow.seen if f.get("type") == "event"]
        assert got == list(range(len(got))), "what the slow client got is a gapless prefix"
        assert len(got) < MESSAGES
        assert slow_close == [4008], f"slow client closed with {slow_close}, after {len(got)}"
