"""``REALTIME_BROKER=gateway``: publishing from a process without Kafka into a running gateway.

A real ``tidings serve`` on the memory broker, a real WebSocket client subscribed to it, and the
publisher in this process (ADR 0024). Each test checks what the client receives: every message,
in order, with the id the caller holds, nothing twice.
"""

from __future__ import annotations

import json
import secrets
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.conftest import API_KEY, SECRET
from tests.support.processes import TIDINGS, Gateway, process_env
from tests.support.wsclient import connect
from tidings import (
    BrokerOverloaded,
    BrokerUnavailable,
    ConfigurationError,
    InvalidMessage,
    Message,
)
from tidings.adapters.http_publisher import GatewayPublisher
from tidings.adapters.outbox import OutboxPublisher, SqliteOutbox
from tidings.application.realtime import RealtimeService
from tidings.bootstrap import Container
from tidings.config import Settings

WAIT = 10.0
"""Seconds to wait for frames and answers."""


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    """``tidings serve`` on the memory broker, with an API key: what ``scripts/demo`` runs."""
    process = Gateway(
        process_env(
            REALTIME_BROKER="memory",
            REALTIME_SECRET=SECRET,
            REALTIME_API_KEY=API_KEY,
            REALTIME_NODE_ID=f"node-{secrets.token_hex(3)}",
        )
    )
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, f"gateway exited {code}:\n{process.output()}"
        # It serves, so its memory broker never warns that a broadcast reaches nobody.
        assert "stays in this process" not in process.output(), process.output()


def unique(prefix: str) -> str:
    return f"{prefix}.{secrets.token_hex(4)}"


def settings_for(url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "realtime_broker": "gateway",
        "realtime_gateway_url": url,
        "realtime_api_key": API_KEY,
    }
    return Settings.load(env_file=None, **{**values, **overrides})


@contextmanager
def realtime_on(settings: Settings) -> Iterator[RealtimeService]:
    """The port as the composition root builds it; its resources closed afterwards."""
    container = Container.for_settings(settings)
    try:
        yield container.realtime()
    finally:
        container.shutdown_resources()


def until(condition: Callable[[], bool], timeout: float = WAIT) -> None:
    """Wait until ``condition()`` holds, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s"
        time.sleep(0.01)


class Recording(httpx.BaseTransport):
    """httpx's own transport, recording the messages of each request; it can hold the first
    request until the test releases it, so that what is queued meanwhile is known."""

    def __init__(self, *, hold_first: bool = False) -> None:
        self._inner = httpx.HTTPTransport()
        self._hold_first = hold_first
        self.requests: list[list[dict[str, Any]]] = []
        self.first_sent = threading.Event()
        self.release = threading.Event()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(json.loads(request.read()))
        if len(self.requests) == 1:
            self.first_sent.set()
            if self._hold_first and not self.release.wait(WAIT):
                raise AssertionError("the test never released the first request")
        return self._inner.handle_request(request)

    def close(self) -> None:
        self._inner.close()


async def test_broadcast_from_a_process_without_kafka_reaches_the_gateways_clients(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_BROKER", "gateway")
    monkeypatch.setenv("REALTIME_GATEWAY_URL", gateway.url)
    monkeypatch.setenv("REALTIME_API_KEY", API_KEY)
    channel = unique("public.laptop")
    with realtime_on(Settings.load(env_file=None)) as realtime:
        async with connect(gateway.ws_url) as client:
            await client.subscribe(channel)
            # Synchronous code (a Django view) waits in its own thread.
            message = await trio.to_thread.run_sync(
                partial(realtime.broadcast, channel, "note", {"n": 1})
            )
            pending = realtime.broadcast_nowait(channel, "note", {"n": 2})
            position = await trio.to_thread.run_sync(pending.result, WAIT)
            first, second = await client.events(2, WAIT)
            await client.nothing_more(0.3)
    assert (first["id"], first["data"]) == (message.id, {"n": 1})
    assert (second["id"], second["data"]) == (pending.message.id, {"n": 2})
    assert second["position"] == str(position)


async def test_abroadcast_under_trio_keeps_the_order(gateway: Gateway) -> None:
    channel = unique("public.trio")
    with realtime_on(settings_for(gateway.url)) as realtime:
        async with connect(gateway.ws_url) as client:
            await client.subscribe(channel)
            sent = [await realtime.abroadcast(channel, "n", i) for i in range(5)]
            events = await client.events(5, WAIT)
            await client.nothing_more(0.3)
    assert [event["id"] for event in events] == [message.id for message in sent]
    assert [event["data"] for event in events] == list(range(5))


async def test_broadcast_nowait_is_batched_what_waits_goes_in_the_next_request(
    gateway: Gateway,
) -> None:
    """While one request is in flight, 249 more are queued: they go in three more requests of
    100, 100 and 49, in order; each message reaches the client once, with the caller's id."""
    channel = unique("public.batch")
    transport = Recording(hold_first=True)
    publisher = GatewayPublisher(gateway.url, API_KEY, timeout=WAIT, transport=transport)
    realtime = RealtimeService({"gateway": lambda: publisher}, "gateway", 65_536)
    try:
        async with connect(gateway.ws_url) as client:
            await client.subscribe(channel)
            pendings = [realtime.broadcast_nowait(channel, "n", 0)]
            assert await trio.to_thread.run_sync(transport.first_sent.wait, WAIT)
            pendings += [realtime.broadcast_nowait(channel, "n", i) for i in range(1, 250)]
            transport.release.set()
            positions = [await pending for pending in pendings]
            events = await client.events(250, WAIT)
            await client.nothing_more(0.3)
    finally:
        await trio.to_thread.run_sync(publisher.close)
    assert [len(messages) for messages in transport.requests] == [1, 100, 100, 49]
    assert [event["data"] for event in events] == list(range(250))
    assert [event["id"] for event in events] == [pending.message.id for pending in pendings]
    assert len({event["id"] for event in events}) == 250
    assert [event["position"] for event in events] == [str(at) for at in positions]


async def test_a_message_the_gateway_refuses_fails_alone_not_its_batch(gateway: Gateway) -> None:
    """The gateway's limit is smaller than this process's (65536 against none here): the list
    holding the large message is refused whole, sent again one by one, and only the large one
    fails, with the gateway's words; the others arrive once each, in order."""
    channel = unique("public.split")
    transport = Recording(hold_first=True)
    publisher = GatewayPublisher(gateway.url, API_KEY, timeout=WAIT, transport=transport)

    def publish(data: Any) -> Any:
        return publisher.publish(channel, Message.event(channel, "n", data))

    try:
        async with connect(gateway.ws_url) as client:
            await client.subscribe(channel)
            first = publish(0)
            assert await trio.to_thread.run_sync(transport.first_sent.wait, WAIT)
            small, large, last = publish(1), publish("x" * 70_000), publish(3)
            transport.release.set()
            await trio.to_thread.run_sync(publisher.flush, WAIT)
            events = await client.events(3, WAIT)
            await client.nothing_more(0.3)
    finally:
        transport.release.set()
        await trio.to_thread.run_sync(publisher.close)
    assert [len(messages) for messages in transport.requests] == [1, 3, 1, 1, 1]
    refused = large.exception(0)
    assert isinstance(refused, InvalidMessage), refused
    assert "413" in str(refused) and "65536" in str(refused) and large.message.id in str(refused)
    accepted = [first, small, last]
    assert [event["id"] for event in events] == [ack.message.id for ack in accepted]
    assert [event["position"] for event in events] == [str(ack.result(0)) for ack in accepted]


def test_a_full_queue_fails_fast_with_BrokerOverloaded(gateway: Gateway) -> None:
    channel = unique("public.full")
    transport = Recording(hold_first=True)
    publisher = GatewayPublisher(gateway.url, API_KEY, max_queued=10, transport=transport)

    def publish(i: int) -> Any:
        return publisher.publish(channel, Message.event(channel, "n", i))

    try:
        accepted = [publish(0)]
        assert transport.first_sent.wait(WAIT)
        accepted += [publish(i) for i in range(1, 10)]  # 1 in flight + 9 queued: the bound
        refused = publish(10)
        assert refused.done()
        error = refused.exception(0)
        assert isinstance(error, BrokerOverloaded) and "10 messages await" in str(error)
        transport.release.set()
        publisher.flush(WAIT)
        assert all(ack.done() and ack.exception(0) is None for ack in accepted)
        assert publish(11).result(WAIT) is not None  # room again
    finally:
        transport.release.set()
        publisher.close()


@pytest.mark.parametrize("key", ["not-the-key", None])
async def test_a_refused_api_key_is_an_error_naming_REALTIME_API_KEY(
    gateway: Gateway, key: str | None
) -> None:
    with (
        realtime_on(settings_for(gateway.url, realtime_api_key=key)) as realtime,
        pytest.raises(ConfigurationError, match="REALTIME_API_KEY") as refused,
    ):
        await realtime.abroadcast(unique("public.key"), "e")
    assert "401" in str(refused.value) and gateway.url in str(refused.value)


async def test_a_gateway_that_is_down_fails_every_message_with_BrokerUnavailable(
    closed_port: int,
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    with realtime_on(settings_for(url)) as realtime:
        pendings = [realtime.broadcast_nowait("public.down", "e", i) for i in range(30)]
        errors = [await trio.to_thread.run_sync(pending.exception, WAIT) for pending in pendings]
    assert all(isinstance(error, BrokerUnavailable) for error in errors), errors
    assert all(url in str(error) for error in errors), errors[0]


def test_a_gateway_that_never_answers_fails_within_the_timeout() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the kernel; nobody ever reads them
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        publisher = GatewayPublisher(url, API_KEY, timeout=0.5)
        try:
            ack = publisher.publish("public.silent", Message.event("public.silent", "e"))
            error = ack.exception(WAIT)
        finally:
            publisher.close()
    assert isinstance(error, BrokerUnavailable)
    assert url in str(error) and "in time" in str(error)


async def run_tidings(args: list[str], env: dict[str, str], cwd: Path) -> dict[str, Any]:
    done = await trio.to_thread.run_sync(
        partial(
            subprocess.run,
            [TIDINGS, *args],
            env=env,
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    )
    assert done.returncode == 0, done.stderr
    printed: dict[str, Any] = json.loads(done.stdout)
    return printed


async def test_tidings_publish_goes_through_the_gateway(gateway: Gateway, tmp_path: Path) -> None:
    """``REALTIME_BROKER=gateway`` and ``--url`` are one path: what the command prints is what
    the client receives."""
    channel = unique("public.cli")
    env = process_env(REALTIME_API_KEY=API_KEY)
    async with connect(gateway.ws_url) as client:
        await client.subscribe(channel)
        by_broker = await run_tidings(
            ["publish", channel, "e", '{"n":1}'],
            {**env, "REALTIME_BROKER": "gateway", "REALTIME_GATEWAY_URL": gateway.url},
            tmp_path,
        )
        by_url = await run_tidings(
            ["publish", channel, "e", '{"n":2}', "--url", gateway.url], env, tmp_path
        )
        events = await client.events(2, WAIT)
    for printed, event in zip([by_broker, by_url], events, strict=True):
        assert printed["id"] == event["id"] and printed["position"] == event["position"]
        assert printed["data"] == event["data"]


async def test_with_an_outbox_broadcasts_are_stored_then_relayed_in_order(
    gateway: Gateway, tmp_path: Path
) -> None:
    channel = unique("public.outbox")
    container = Container.for_settings(
        settings_for(gateway.url, realtime_outbox=str(tmp_path / "outbox.db"))
    )
    try:
        realtime = container.realtime()
        async with connect(gateway.ws_url) as client:
            await client.subscribe(channel)
            pendings = [realtime.broadcast_nowait(channel, "n", i) for i in range(20)]
            # Acknowledged once stored, before the gateway has them: no position yet.
            assert [pending.result(0) for pending in pendings] == [None] * 20
            events = await client.events(20, WAIT)
        await trio.to_thread.run_sync(realtime.broker().flush, WAIT)
        store = container.outbox_store()
        assert store is not None and store.status().pending == 0
    finally:
        container.shutdown_resources()
    assert [event["id"] for event in events] == [pending.message.id for pending in pendings]
    assert [event["data"] for event in events] == list(range(20))


def test_with_an_outbox_a_gateway_that_is_down_loses_nothing(
    tmp_path: Path, closed_port: int
) -> None:
    url = f"http://127.0.0.1:{closed_port}"
    store = SqliteOutbox(tmp_path / "outbox.db")
    outbox = OutboxPublisher(
        store, GatewayPublisher(url, API_KEY), retry_max=0.05, close_timeout=0.2
    )
    message = Message.event("public.later", "e", 1)
    try:
        assert outbox.publish(message.channel, message).result(WAIT) is None
        until(lambda: outbox.status().attempts >= 1)
        status = outbox.status()
        assert status.pending == 1 and url in (status.last_error or "")
    finally:
        outbox.close()
    kept = SqliteOutbox(tmp_path / "outbox.db")
    try:
        assert [m.id for _, m in kept.oldest(10)] == [message.id]
    finally:
        kept.close()
