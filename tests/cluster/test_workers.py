"""``tidings serve --workers 2`` on the real Kafka broker (ADR 0032).

Two worker processes share one port; the kernel spreads connections between them, each worker is
its own node (``BASE-w1``, ``BASE-w2``), ``/metrics`` of either shows both, a worker killed with
SIGKILL is started again under the same node id while its clients resume elsewhere with nothing
lost, and SIGTERM drains both (every client gets 1001) before the command exits 0.
"""

from __future__ import annotations

import contextlib
import functools
import os
import re
import secrets
import signal
from collections.abc import Iterator
from contextlib import AsyncExitStack
from typing import Any

import httpx
import pytest
import trio
import trio_websocket
from prometheus_client.parser import text_string_to_metric_families

import tidings.client
from tests.client.support import publish, token
from tests.conftest import API_KEY, SECRET
from tests.support.processes import Gateway, process_env
from tests.support.wsclient import Client, connect

pytestmark = pytest.mark.kafka

WAIT = 30.0
"""Seconds to wait for a condition (a new channel's first message takes a few seconds)."""

WARM_UP = 120.0
"""Seconds the first messages of a channel may take on a broker that just started."""

MAX_CLIENTS = 40
"""Connections opened at most until both workers hold one: the kernel picks a worker by a hash of
the client's address and port, so 40 all on one worker happen once in 2**39 runs."""

_LISTENING = re.compile(r"worker (\S+) listening on \S+ \(pid (\d+)\)")


@pytest.fixture
def base() -> str:
    return f"wk{secrets.token_hex(3)}"


@pytest.fixture
def workers(kafka_env: dict[str, str], base: str) -> Iterator[Gateway]:
    """``tidings serve --workers 2`` on Kafka, node id ``base``; stopped (exit 0) at the end."""
    env = process_env(REALTIME_SECRET=SECRET, REALTIME_API_KEY=API_KEY, **kafka_env)
    env["REALTIME_NODE_ID"] = base
    process = Gateway(env, "--workers", "2", ready_timeout=90)
    try:
        yield process
    finally:
        if process.process.poll() is None:
            code = process.stop(timeout=60)
            assert code == 0, f"supervisor exited {code}:\n{process.output()}"


def pids(process: Gateway) -> dict[str, int]:
    """The last pid each worker node said it listens with (from the workers' log lines)."""
    found: dict[str, int] = {}
    for line in process.stderr.lines:
        match = _LISTENING.search(line)
        if match:
            found[match.group(1)] = int(match.group(2))
    return found


def connections_gauge(url: str) -> tuple[float, set[str]]:
    """``tidings_connections`` and the nodes of ``tidings_node_info`` from ``url``/metrics."""
    text = httpx.get(url + "/metrics", timeout=WAIT).text
    total = None
    nodes: set[str] = set()
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "tidings_connections":
                total = sample.value
            if sample.name == "tidings_node_info" and sample.value == 1:
                nodes.add(sample.labels["node"])
    assert total is not None, text
    return total, nodes


async def until(condition: Any, what: str, timeout: float = WAIT, *, fail: bool = True) -> None:
    """Wait until ``condition()`` (run in a thread) is true, polling; fail naming ``what``
    (or, without ``fail``, just return)."""
    with trio.move_on_after(timeout):
        while not await trio.to_thread.run_sync(condition):  # noqa: ASYNC110 - polls processes
            await trio.sleep(0.1)
        return
    if fail:
        pytest.fail(f"not within {timeout}s: {what}")


async def warm_up(workers: Gateway, channel: str, clients: list[Client]) -> None:
    """Publish ``warm-up`` events to ``channel`` until each client has one: the first record of
    a new topic reaches a worker once its consumer found the topic, which on a fresh broker
    (its first consumer groups) takes longer than any one wait should."""
    waiting = list(clients)
    with trio.fail_after(WARM_UP):
        while waiting:
            await trio.to_thread.run_sync(
                functools.partial(publish, workers, channel, {}, event="warm-up")
            )
            for client in list(waiting):
                with contextlib.suppress(trio.TooSlowError):
                    await client.expect(2, type="event", channel=channel, event="warm-up")
                    waiting.remove(client)


async def test_connections_land_on_both_workers_and_a_broadcast_reaches_both(
    workers: Gateway, base: str
) -> None:
    nodes = {f"{base}-w1", f"{base}-w2"}
    assert f"nodes {base}-w1, {base}-w2" in "\n".join(workers.stdout.lines)
    channel = f"news.{secrets.token_hex(4)}"
    async with AsyncExitStack() as stack:
        clients: list[Client] = []
        seen: dict[str, Client] = {}
        while set(seen) != nodes:
            assert len(clients) < MAX_CLIENTS, f"every connection on {set(seen)}"
            client = await stack.enter_async_context(connect(workers.ws_url))
            clients.append(client)
            seen.setdefault(client.connected["data"]["node"], client)
        for client in seen.values():
            await client.subscribe(channel)

        await warm_up(workers, channel, list(seen.values()))
        answers = await trio.to_thread.run_sync(publish, workers, channel, {"n": 1})
        assert len(answers) == 1
        for node, client in seen.items():
            frame = await client.expect(WAIT, type="event", channel=channel, event="note")
            assert frame["data"] == {"n": 1}, (node, frame)

        # Whichever worker answers /metrics, it counts the connections of both.
        for _ in range(4):
            await until(
                lambda: connections_gauge(workers.url) == (len(clients), nodes),
                f"/metrics shows {len(clients)} connections on {nodes}",
            )

        workers.signal(signal.SIGTERM)
        for client in clients:
            with pytest.raises(trio_websocket.ConnectionClosed) as closed:
                await client.recv(WAIT)
            reason = closed.value.reason
            assert reason is not None and reason.code == 1001, closed.value
    code = await trio.to_thread.run_sync(workers.wait, 60)
    assert code == 0, workers.output()
    assert "every worker stopped" in workers.output()


async def test_a_killed_worker_restarts_as_the_same_node_and_its_clients_resume(
    workers: Gateway, base: str
) -> None:
    channel = f"news.{secrets.token_hex(4)}"
    before = pids(workers)
    assert set(before) == {f"{base}-w1", f"{base}-w2"}, workers.output()
    doomed = f"{base}-w1"
    received: dict[int, list[int]] = {}
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        clients: list[tidings.client.Client] = []
        while not any(client.node == doomed for client in clients):
            assert len(clients) < MAX_CLIENTS, "no connection on the doomed worker"
            client = await stack.enter_async_context(
                tidings.client.connect(
                    workers.ws_url, token=token("u"), min_delay=0.05, max_delay=0.2
                )
            )
            with trio.fail_after(WAIT):
                await client.wait_connected()
            clients.append(client)
        subscriptions = [await client.subscribe(channel) for client in clients]

        warmed: set[int] = set()

        async def read(index: int, subscription: tidings.client.Subscription) -> None:
            got = received.setdefault(index, [])
            async for event in subscription:
                if event.event == "warm-up":
                    warmed.add(index)
                else:
                    got.append(event.data["seq"])

        for index, subscription in enumerate(subscriptions):
            nursery.start_soon(read, index, subscription)

        def everyone_has(count: int) -> bool:
            return len(received) == len(clients) and all(
                len(got) >= count for got in received.values()
            )

        with trio.fail_after(WARM_UP):  # as warm_up(): until the new topic reaches everyone
            while len(warmed) < len(clients):
                await trio.to_thread.run_sync(
                    functools.partial(publish, workers, channel, {}, event="warm-up")
                )
                await until(lambda: len(warmed) == len(clients), "warm-up", timeout=2, fail=False)
        await trio.to_thread.run_sync(publish, workers, channel, *({"seq": i} for i in range(10)))
        await until(lambda: everyone_has(10), "every client has the first 10 messages")

        os.kill(before[doomed], signal.SIGKILL)
        await trio.to_thread.run_sync(
            publish, workers, channel, *({"seq": i} for i in range(10, 20))
        )
        await until(lambda: everyone_has(20), "every client has all 20 messages")
        await until(
            lambda: pids(workers).get(doomed, before[doomed]) != before[doomed],
            f"{doomed} started again",
        )
        await until(
            lambda: all(client.node is not None for client in clients), "every client connected"
        )
        nursery.cancel_scope.cancel()
    for index, got in received.items():
        assert got == list(range(20)), f"client {index} got {got}"
    restarted = rf"worker {doomed} exited on SIGKILL after [\d.]+s; starting it again in"
    assert re.search(restarted, workers.output()), workers.output()


def gone(pid: int) -> bool:
    """Whether process ``pid`` has ended (a zombie waiting for its reaper counts as ended)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


async def test_workers_do_not_outlive_a_killed_supervisor(workers: Gateway, base: str) -> None:
    running = pids(workers)
    assert set(running) == {f"{base}-w1", f"{base}-w2"}, workers.output()
    async with connect(workers.ws_url) as client:
        workers.kill()  # SIGKILL: the supervisor can tell nobody
        with pytest.raises(trio_websocket.ConnectionClosed) as closed:
            await client.expect(WAIT, type="never")
        reason = closed.value.reason
        assert reason is not None and reason.code == 1001, closed.value  # drained, not dropped
    await until(lambda: all(gone(pid) for pid in running.values()), "both workers ended")
    assert "the supervisor is gone: shutting down" in workers.output()
