"""How connections end: gateway shutdown (1001), idle clients (4000), expired tokens (4001)."""

from __future__ import annotations

import secrets
import signal

import trio
import trio_websocket

from tests.support.processes import Gateway
from tests.support.wsclient import connect

from .support import WAIT, broadcast, broadcast_many, close_code, ping_pong, token, unique


async def _connect_during_shutdown(gateway: Gateway) -> str:
    """What a new client gets while the gateway shuts down: refused, or closed with 1001."""
    try:
        async with connect(gateway.ws_url) as client:
            return f"served: {client.connected}"
    except trio_websocket.ConnectionClosed as exc:
        assert exc.reason is not None
        return f"closed {exc.reason.code}"
    except (OSError, trio_websocket.HandshakeError):
        return "refused"


async def test_sigterm_closes_clients_with_1001_and_exits_0(doomed_gateway: Gateway) -> None:
    gateway = doomed_gateway
    channel = unique("public.shutdown")
    async with connect(gateway.ws_url) as reader, connect(gateway.ws_url) as stalled:
        await reader.subscribe(channel)
        await stalled.subscribe(channel)
        # The stalled client stops reading, so its goodbye takes the gateway a moment.
        for i in range(3):
            await broadcast(gateway, channel, "e", i)
        await reader.events(3, WAIT)

        gateway.signal(signal.SIGTERM)
        assert await close_code(reader) == 1001
        # While the gateway is still waiting for the stalled client, nobody new gets in.
        outcome = await _connect_during_shutdown(gateway)
        assert outcome in ("refused", "closed 1001"), outcome
        # The stalled client, reading at last, gets what was queued, then "going away".
        assert await close_code(stalled) == 1001
        assert [f["data"] for f in stalled.seen if f.get("type") == "event"] == [0, 1, 2]

    code = await trio.to_thread.run_sync(gateway.wait)
    assert code == 0, gateway.output()
    assert await _connect_during_shutdown(gateway) == "refused"


async def test_sigterm_with_a_backlog_still_says_going_away(doomed_gateway: Gateway) -> None:
    """A client that has fallen behind still gets intact frames and a clean 1001 at shutdown."""
    gateway = doomed_gateway
    channel = unique("public.backlog")
    blob = secrets.token_hex(1024)
    async with connect(gateway.ws_url) as reader, connect(gateway.ws_url) as behind:
        await reader.subscribe(channel)
        await behind.subscribe(channel)
        await broadcast_many(
            gateway,
            [
                {"channel": channel, "event": "e", "data": {"n": n, "blob": blob}}
                for n in range(400)
            ],
            chunk=100,
        )
        # Once the reader has everything, the gateway has handed it all to the other client's
        # connection too, which has not read any of it yet (its TCP buffers are full).
        assert len(await reader.events(400, WAIT + 10)) == 400

        gateway.signal(signal.SIGTERM)
        code = await close_code(behind)
        got = [f["data"]["n"] for f in behind.seen if f.get("type") == "event"]
        assert got == list(range(len(got))), "the frames before the close are intact, in order"
        assert code == 1001, f"closed with {code} after {len(got)} of 400 frames"
    assert await trio.to_thread.run_sync(gateway.wait) == 0, gateway.output()


async def test_idle_client_is_closed_with_4000_and_a_pinging_one_stays(
    strict_gateway: Gateway,
) -> None:
    # The strict gateway has REALTIME_IDLE_TIMEOUT=2. The clock starts before the silent client
    # connects, so the span measured holds the gateway's idle wait and cannot be shorter.
    start = trio.current_time()
    async with connect(strict_gateway.ws_url) as silent, connect(strict_gateway.ws_url) as pinger:
        closed = trio.Event()
        outcome: list[tuple[int, float]] = []

        async def watch_silent() -> None:
            code = await close_code(silent, 10)
            outcome.append((code, trio.current_time() - start))
            closed.set()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_silent)
            for _ in range(5):
                await ping_pong(pinger)
                await trio.sleep(1)
            await closed.wait()
        [(code, after)] = outcome
        assert code == 4000
        assert after >= 2, after  # the idle timeout, not something sooner, closed it
        await ping_pong(pinger)


async def test_token_expiry_closes_with_4001(gateway: Gateway) -> None:
    async with connect(gateway.ws_url, token("7", ttl=2)) as client:
        assert client.connected["type"] == "connected"
        await ping_pong(client)
        start = trio.current_time()
        with trio.fail_after(10):
            try:
                while True:
                    await client.recv(10)
            except trio_websocket.ConnectionClosed as exc:
                assert exc.reason is not None
                assert exc.reason.code == 4001
                assert "expired" in (exc.reason.reason or "")
        assert trio.current_time() - start <= 4
