"""Backpressure: a client that stops reading is cut off (4008); the others lose nothing (§5).

design.md §5: "A client that stops reading is disconnected with a code that tells it to resume;
memory stays bounded; nothing is lost for the clients that keep up."

A reading client can still fall more than a (deliberately tiny) queue behind when the gateway
drains a Kafka backlog faster than the client parses frames; it is then cut like any slow
client and resumes from its last position. What it must never see is a gap or a duplicate.

The close frame of a cut waits behind everything already in the socket's buffers, and the
gateway gives it ``CLOSE_TIMEOUT`` (1 s) before it drops the socket: a client that does not read
within that second sees the connection end without a code (1006). So 4008 is asserted where the
client reads at once (tests/unit/test_gateway_inprocess.py, without sockets); here a cut is
4008 or 1006, and the gateway's overflow counter says it was a cut for being slow.
"""

from __future__ import annotations

import secrets

import httpx
import trio
import trio_websocket

from tests.support.processes import Gateway
from tests.support.wsclient import Client, connect

from .support import WAIT, auth, overflows, unique

MESSAGES = 2_000
PER_REQUEST = 10
PAYLOAD = 2_048


CUT = frozenset({4008, 1006})
"""How a cut for being slow may end, seen from the client (see the module doc)."""


async def _close_code(client: Client) -> int | None:
    """Read (keeping them in ``client.seen``) the frames that reached ``client`` until the
    server's close: its code; None when no frame came for ``WAIT`` seconds and no close either.
    The bound is on each step, not on the whole, which is as long as the backlog."""
    while True:
        try:
            await client.recv(WAIT)
        except trio_websocket.ConnectionClosed as exc:
            assert exc.reason is not None
            return int(exc.reason.code)
        except trio.TooSlowError:
            return None


async def test_slow_consumer_is_cut_off_and_the_fast_one_gets_everything(
    small_queue_gateway: Gateway,
) -> None:
    """Every wait is for a condition and bounded by how long one step may take (a request, a
    frame), never by a guess at how long the whole takes: on a busy machine with Kafka that is
    minutes, on an idle one seconds."""
    # The gateway queues at most 50 frames per connection (REALTIME_QUEUE_SIZE=50).
    gateway = small_queue_gateway
    channel = unique("public.firehose")
    blob = secrets.token_hex(PAYLOAD // 2)
    cut_before = await overflows(gateway)
    fast_has_all = trio.Event()

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
        slow_close: list[int | None] = []

        async def read_fast() -> None:
            last: str | None = None
            resumes_in_vain = 0

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
                assert closed.reason is not None and closed.reason.code in CUT, closed.reason
            while len(received) < MESSAGES:  # cut (again)? resume (again)
                before = len(received)
                # The except is inside the block: out of connect(), trio wraps it in a group.
                async with connect(gateway.ws_url) as again:
                    try:
                        await again.subscribe(channel, since=last)
                        await read(again)
                    except trio_websocket.ConnectionClosed as closed_again:
                        assert closed_again.reason is not None
                        assert closed_again.reason.code in CUT, closed_again.reason
                resumes_in_vain = 0 if len(received) > before else resumes_in_vain + 1
                assert resumes_in_vain < 20, f"20 resumes from {last} in a row brought nothing"
            fast_has_all.set()

        async def read_slow_once_the_fast_one_has_all() -> None:
            # The slow client reads nothing until the fast one has every message: by then the
            # gateway has handed every message to both connections, so the slow one's queue
            # has overflowed. (Waiting for the overflow counter instead would be a race: the
            # fast client, cut and resuming, moves it too.) Then it reads what reached it, up
            # to the end of the connection.
            await fast_has_all.wait()
            slow_close.append(await _close_code(slow))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, publish_all)
            nursery.start_soon(read_fast)
            nursery.start_soon(read_slow_once_the_fast_one_has_all)

        assert received == list(range(MESSAGES)), "the fast client lost or reordered messages"
        got = [f["data"]["n"] for f in slow.seen if f.get("type") == "event"]
        assert got == list(range(len(got))), "what the slow client got is a gapless prefix"
        assert len(got) < MESSAGES
        assert len(slow_close) == 1 and slow_close[0] in CUT, (
            f"slow client: {slow_close} (None: never closed), after {len(got)} messages"
        )
        assert await overflows(gateway) > cut_before, "the gateway counted no slow consumer"
