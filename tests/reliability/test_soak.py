"""Soak: thousands of connections churning against one gateway, then everything given back.

Waves of clients connect (anonymous, or with a token), subscribe to public channels and to a
presence channel, wait for a broadcast, and leave: a clean close, a TCP reset, or a FIN without a
WebSocket close. A publisher broadcasts over HTTP all along. After a warm-up wave the gateway's
RSS and open fds are the baseline; after the soak its fds are back to the baseline (+- a few),
its RSS within ``RSS_BOUND_KB`` of it, and ``/healthz`` and ``/metrics`` show no connection
and no subscription.

``TIDINGS_SOAK_SECONDS`` (default 30) sets how long the waves go on.
"""

from __future__ import annotations

import functools
import os
import socket
import struct
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import pytest
import trio

from tests.support.processes import Gateway
from tests.support.wsclient import Client, connect

from .conftest import (
    ahealthz,
    auth,
    fd_count,
    metric,
    quiet_fd_count,
    record,
    rss_kb,
    running_gateway,
    token,
    wait_until,
)

SOAK_SECONDS = float(os.environ.get("TIDINGS_SOAK_SECONDS", "30"))
WAVE = 250
"""Clients per wave, all at once."""
PUBLIC = [f"public.soak.{n}" for n in range(4)]
PRESENCE = [f"presence-chat.soak{n}" for n in range(3)]
WAIT = 20.0
FD_SLACK = 3
RSS_TOLERANCE_KB = 10 * 1024
"""What 1,000 big broadcasts may leave behind (``test_big_broadcasts_do_not_stay_in_memory``):
the frame cache of ``adapters/web/framing`` (at most 1 MiB) and the allocator's arenas."""
RSS_BOUND_KB = 10 * 1024
"""What the churn may leave whatever its length: CPython's allocator keeps freed arenas at the
high-water mark of the waves, the memory broker's history (50 messages per channel) and the
frame cache fill."""
CYCLES_PER_CONNECTION_KB = 1
"""... plus, per connection, the reference cycles of connections old enough to reach the oldest
generation: they wait for the gateway's full collection, once a minute
(``entrypoints.runtime.FULL_EVERY``), so within a 30 s soak they are all still there (about
0.7 kB a connection; measured 6-14 MB for 7,000 to 18,000 connections). A leaked session,
outbox or socket wrapper (several kB each) goes well over it; ``tests/unit/test_runtime.py``
checks that the full collection frees what reached the oldest generation."""


@pytest.fixture(scope="module")
def soak_gateway() -> Iterator[Gateway]:
    with running_gateway(REALTIME_HISTORY_SIZE="50") as gateway:
        yield gateway


async def abort(client: Client, *, reset: bool) -> None:
    """Drop the TCP connection without a WebSocket close: a reset, or a plain FIN."""
    assert client.stream is not None, "abort needs a client made by connect()"
    stream = client.stream.stream
    if reset:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


class Soak:
    def __init__(self, gateway: Gateway, http: httpx.Client) -> None:
        self.gateway = gateway
        self.http = http
        self.ended: Counter[str] = Counter()
        self.events = 0
        self.presence_frames = 0
        self.broadcasts = 0
        self.clients = 0

    async def client(self, number: int) -> None:
        public = PUBLIC[number % len(PUBLIC)]
        second = PUBLIC[(number + 1) % len(PUBLIC)]
        presence = PRESENCE[number % len(PRESENCE)] if number % 3 == 0 else None
        credential = token(f"s{number % 400}", info={"n": number}) if number % 2 == 0 else None
        if presence and credential is None:
            credential = token(f"p{number % 400}")
        ending = ("clean", "clean", "reset", "fin")[number % 4]
        with trio.CancelScope() as gone:
            async with connect(self.gateway.ws_url, credential) as client:
                assert client.connected["type"] == "connected", client.connected
                got_event = False
                channels = [public, second] if number % 2 else [public]
                for channel in [*channels, presence] if presence else channels:
                    await client.send(type="subscribe", channel=channel)
                pending = len(channels) + bool(presence)
                with trio.fail_after(WAIT):
                    while pending or not got_event:
                        frame = await client.recv(WAIT)
                        client.seen.clear()
                        if frame["type"] == "subscribed":
                            pending -= 1
                            if frame["channel"] == presence:
                                assert isinstance(frame["data"]["members"], list), frame
                            continue
                        assert frame["type"] == "event", frame
                        if frame["event"].startswith("presence."):
                            self.presence_frames += 1
                        elif frame["channel"] in channels:
                            self.events += 1
                            got_event = True
                if ending == "clean":
                    await client.ws.aclose()
                else:
                    await abort(client, reset=ending == "reset")
                    # No goodbye: trio-websocket would wait (60 s) for a close handshake
                    # on the socket we just dropped.
                    gone.cancel()
        self.ended[ending] += 1
        self.clients += 1

    async def wave(self, first: int) -> None:
        with trio.fail_after(3 * WAIT):
            async with trio.open_nursery() as nursery:
                for number in range(first, first + WAVE):
                    nursery.start_soon(self.client, number)

    async def publish(self) -> None:
        """A batch to every channel every 50 ms, until cancelled."""
        while True:
            body = [
                {"channel": name, "event": "tick", "data": {"n": self.broadcasts}}
                for name in PUBLIC + PRESENCE
            ]
            response = await trio.to_thread.run_sync(
                functools.partial(self.http.post, "/broadcast", json=body)
            )
            assert response.status_code == 200, response.text
            self.broadcasts += len(body)
            await trio.sleep(0.05)


async def settled(gateway: Gateway) -> dict[str, object]:
    """Wait for /healthz to show no connection and no subscription; its payload."""

    async def check() -> dict[str, object] | None:
        status, payload = await ahealthz(gateway)
        done = status == 200 and payload["connections"] == 0 and payload["subscriptions"] == 0
        return payload if done else None

    deadline = trio.current_time() + WAIT
    while True:
        payload = await check()
        if payload:
            return payload
        assert trio.current_time() < deadline, "connections or subscriptions never reached 0"
        await trio.sleep(0.1)


@pytest.mark.timeout(SOAK_SECONDS + 180)
async def test_connections_churn_and_everything_is_given_back(soak_gateway: Gateway) -> None:
    pid = soak_gateway.process.pid
    # The publisher's keep-alive connection stays open from before the baseline to after the
    # last measure, so it counts the same in both.
    http = httpx.Client(base_url=soak_gateway.url, headers=auth(), timeout=WAIT)
    soak = Soak(soak_gateway, http)
    waves = 0
    peaks = {"fd": 0, "rss": 0}

    async def sample_peaks() -> None:
        while True:
            peaks["fd"] = max(peaks["fd"], fd_count(pid))
            peaks["rss"] = max(peaks["rss"], rss_kb(pid))
            await trio.sleep(0.05)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(soak.publish)
        await soak.wave(0)  # warm-up: same concurrency as every later wave
        await settled(soak_gateway)
        fd_baseline, rss_baseline = await quiet_fd_count(pid), rss_kb(pid)
        nursery.start_soon(sample_peaks)
        started = time.monotonic()
        rss_half: int | None = None
        clients_half = 0
        while time.monotonic() - started < SOAK_SECONDS:
            waves += 1
            await soak.wave(waves * WAVE)
            if rss_half is None and time.monotonic() - started >= SOAK_SECONDS / 2:
                rss_half, clients_half = rss_kb(pid), soak.clients
        soaked = time.monotonic() - started
        nursery.cancel_scope.cancel()
    health = await settled(soak_gateway)
    fd_after = await wait_until(
        lambda: (n := fd_count(pid)) <= fd_baseline + FD_SLACK and n,
        WAIT,
        f"gateway fds back to {fd_baseline} +- {FD_SLACK}",
    )
    rss_after = rss_kb(pid)
    connections = metric(soak_gateway, "tidings_connections")
    subscriptions = metric(soak_gateway, "tidings_subscriptions")
    await trio.to_thread.run_sync(http.close)
    record(
        "soak",
        seconds=round(soaked, 1),
        waves=waves,
        clients_per_wave=WAVE,
        connections=soak.clients,
        endings=dict(soak.ended),
        events_received=soak.events,
        presence_frames=soak.presence_frames,
        messages_broadcast=soak.broadcasts,
        fd_baseline=fd_baseline,
        fd_peak_sampled=peaks["fd"],
        fd_after=fd_after,
        rss_baseline_kb=rss_baseline,
        rss_peak_kb_sampled=peaks["rss"],
        rss_after_kb=rss_after,
        rss_growth_kb=rss_after - rss_baseline,
        rss_half_kb=rss_half,
        rss_growth_second_half_kb=None if rss_half is None else rss_after - rss_half,
        connections_second_half=soak.clients - clients_half,
    )
    assert soak.clients == (waves + 1) * WAVE
    assert abs(fd_after - fd_baseline) <= FD_SLACK, (fd_baseline, fd_after)
    bound = RSS_BOUND_KB + CYCLES_PER_CONNECTION_KB * soak.clients
    assert rss_after - rss_baseline <= bound, (rss_baseline, rss_after, soak.clients)
    assert connections == 0 and subscriptions == 0, (connections, subscriptions)
    assert health["connections"] == 0 and health["subscriptions"] == 0, health
    assert soak_gateway.process.poll() is None


BIG_MESSAGES = 1_000
BIG_DATA = 20_000


async def test_big_broadcasts_do_not_stay_in_memory() -> None:
    """1,000 distinct broadcasts of 20 kB to one subscriber: once delivered, nothing holds them
    (the memory broker keeps 1 message of history here). Guards the fixed bug of a frame cache
    bounded by count (4096 frames, up to ~0.5 GB), not by bytes as ``FrameCache`` now is."""
    with running_gateway(REALTIME_HISTORY_SIZE="1") as gateway:
        pid = gateway.process.pid
        http = httpx.Client(base_url=gateway.url, headers=auth(), timeout=WAIT)
        async with connect(gateway.ws_url) as client:
            await client.subscribe("public.big")
            await client.send(type="ping")
            await client.expect(WAIT, type="pong")
            baseline = rss_kb(pid)
            for start in range(0, BIG_MESSAGES, 10):
                body = [
                    {"channel": "public.big", "event": "e", "data": f"{n:06d}" + "x" * BIG_DATA}
                    for n in range(start, start + 10)
                ]
                response = await trio.to_thread.run_sync(
                    functools.partial(http.post, "/broadcast", json=body)
                )
                assert response.status_code == 200, response.text
                await client.events(10, WAIT)
                client.seen.clear()
            after = rss_kb(pid)
        await trio.to_thread.run_sync(http.close)
    record(
        "soak.big_broadcasts",
        messages=BIG_MESSAGES,
        data_bytes=BIG_DATA,
        rss_baseline_kb=baseline,
        rss_after_kb=after,
        rss_growth_kb=after - baseline,
    )
    assert after - baseline <= RSS_TOLERANCE_KB, f"RSS {baseline} -> {after} kB"
