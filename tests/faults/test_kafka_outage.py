"""Kafka stopped and restarted under publishers and gateways: nothing accepted is lost."""

from __future__ import annotations

import json
import time
from pathlib import Path

import httpx
import pytest
import trio

from tidings import BrokerUnavailable
from tidings.bootstrap import Container
from tidings.config import Settings

from ..conftest import API_KEY, SECRET
from ..support.kafka import KafkaNode
from ..support.processes import Gateway, TidingsProcess, process_env
from ..support.wsclient import connect

CHANNEL = "public.outage"


def _container(env: dict[str, str], **extra: object) -> Container:
    settings = {name.lower(): value for name, value in env.items()}
    return Container.for_settings(Settings.load(env_file=None, **settings, **extra))


def _consume_all(env: dict[str, str], channel: str = CHANNEL) -> list[dict[str, object]]:
    """Every message of the channel, read back by the seed's consumer in a fresh group."""
    consumer = TidingsProcess(
        ["kafka", "consume", "--channels", channel, "--stop-when-empty", "--timeout", "1000"],
        process_env(**{**env, "KAFKA_CONSUMER_GROUP": env["KAFKA_CONSUMER_GROUP"] + "-check"}),
    )
    assert consumer.wait(120) == 0, consumer.output()
    return [json.loads(line) for line in consumer.stdout.lines if line.startswith("{")]


def test_with_the_outbox_every_message_arrives_at_least_once_in_order(
    kafka_node: KafkaNode, node_env: dict[str, str], tmp_path: Path
) -> None:
    """The outbox promises at-least-once (README, "Riding out a Kafka outage"): a message Kafka
    took whose acknowledgement the relay never saw (Kafka stopped meanwhile) stays stored and is
    sent again. So the log may hold copies, but only of that kind: the same message (same id)
    once more, after its first copy; and every message arrives, first in the order the service
    broadcast it."""
    container = _container(node_env, realtime_outbox=str(tmp_path / "outbox.db"))
    realtime = container.realtime()
    try:
        for i in range(100):
            realtime.broadcast(CHANNEL, "e", {"seq": i})
        kafka_node.stop()
        started = time.monotonic()
        for i in range(100, 200):
            realtime.broadcast(CHANNEL, "e", {"seq": i})  # accepted by the outbox: no error
        accepted_while_down = time.monotonic() - started
        assert container.kafka_publisher().status().pending > 0
        kafka_node.start()
        for i in range(200, 300):
            realtime.broadcast(CHANNEL, "e", {"seq": i})
        container.kafka_publisher().flush(120)
        assert container.kafka_publisher().status().pending == 0
    finally:
        container.shutdown_resources()
    assert accepted_while_down < 5, "the outbox must accept without waiting for Kafka"
    log = _consume_all(node_env)
    delivered: list[int] = [message["data"]["seq"] for message in log]  # type: ignore[index]
    assert list(dict.fromkeys(delivered)) == list(range(300)), "lost or out of order"
    ids: dict[int, set[object]] = {}
    for seq, message in zip(delivered, log, strict=True):
        ids.setdefault(seq, set()).add(message["id"])
    assert all(len(same) == 1 for same in ids.values()), "a copy is not the message sent again"


def test_without_the_outbox_every_failure_is_raised_and_none_is_silent(
    kafka_node: KafkaNode, node_env: dict[str, str]
) -> None:
    container = _container(node_env)
    realtime = container.realtime()
    succeeded: list[int] = []
    failed: list[int] = []
    slowest_failure = 0.0
    try:
        for i in range(50):
            realtime.broadcast(CHANNEL, "e", {"seq": i})
            succeeded.append(i)
        kafka_node.stop()
        for i in range(50, 70):
            started = time.monotonic()
            try:
                realtime.broadcast(CHANNEL, "e", {"seq": i})
                succeeded.append(i)
            except BrokerUnavailable as error:
                assert node_env["KAFKA_BROKERS"] in str(error)
                failed.append(i)
                slowest_failure = max(slowest_failure, time.monotonic() - started)
        kafka_node.start()
        _wait_until_publishing_works(realtime)
        for i in range(70, 120):
            realtime.broadcast(CHANNEL, "e", {"seq": i})
            succeeded.append(i)
    finally:
        container.shutdown_resources()
    assert failed, "publishing while Kafka is down must fail loudly"
    assert slowest_failure < float(node_env["KAFKA_TIMEOUT"]) + 3
    delivered = [message["data"]["seq"] for message in _consume_all(node_env)]  # type: ignore[index]
    assert set(succeeded) <= set(delivered), "an acknowledged message was lost"
    assert set(delivered) <= set(succeeded) | set(failed)
    assert len(delivered) == len(set(delivered)), "a message was delivered twice"


def _wait_until_publishing_works(realtime: object, timeout: float = 60) -> None:
    """After a restart the producer reconnects in the background; probe until it does."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            realtime.broadcast("public.probe", "probe")  # type: ignore[attr-defined]
            return
        except BrokerUnavailable:
            if time.monotonic() > deadline:
                raise


async def _health(url: str) -> int:
    def get() -> int:
        return httpx.get(url + "/healthz", timeout=5).status_code

    return await trio.to_thread.run_sync(get)


async def _status(url: str) -> int:
    return await trio.to_thread.run_sync(lambda: httpx.get(url, timeout=5).status_code)


async def _text(url: str) -> str:
    return await trio.to_thread.run_sync(lambda: httpx.get(url, timeout=5).text)


async def _broadcast(url: str, seqs: range) -> int:
    def post() -> int:
        body = [{"channel": CHANNEL, "event": "e", "data": {"seq": i}} for i in seqs]
        response = httpx.post(
            url + "/broadcast",
            json=body,
            timeout=30,
            headers={"authorization": f"Bearer {API_KEY}"},
        )
        return response.status_code

    return await trio.to_thread.run_sync(post)


async def _wait_health(url: str, status: int, timeout: float) -> None:
    with trio.fail_after(timeout):
        while await _health(url) != status:  # noqa: ASYNC110 - polls the gateway over HTTP
            await trio.sleep(0.5)


@pytest.mark.timeout(300)
async def test_a_gateway_rides_out_a_kafka_restart(
    kafka_node: KafkaNode, node_env: dict[str, str]
) -> None:
    gateway = Gateway(
        process_env(
            REALTIME_SECRET=SECRET,
            REALTIME_API_KEY=API_KEY,
            REALTIME_NODE_ID="fault-node",
            **node_env,
        )
    )
    try:
        async with connect(gateway.ws_url) as staying, connect(gateway.ws_url) as leaving:
            await staying.subscribe(CHANNEL)
            await leaving.subscribe(CHANNEL)
            assert await _broadcast(gateway.url, range(10)) == 200
            await staying.events(10, timeout=30)
            last = (await leaving.events(10, timeout=30))[-1]["position"]
        async with connect(gateway.ws_url) as staying:
            await staying.subscribe(CHANNEL)
            assert await _broadcast(gateway.url, range(10, 20)) == 200  # while `leaving` is away
            await staying.events(10, timeout=30)
            await trio.to_thread.run_sync(kafka_node.stop)
            await _wait_health(gateway.url, 503, timeout=40)
            # Not ready, but alive: /livez answers while the event loop does (a restart by an
            # orchestrator would not bring Kafka back), and /metrics says the feed is down.
            assert await _status(gateway.url + "/livez") == 200
            assert "\ntidings_broker_connected 0.0\n" in await _text(gateway.url + "/metrics")
            assert await _broadcast(gateway.url, range(99, 100)) == 503
            await trio.to_thread.run_sync(kafka_node.start)
            await _wait_health(gateway.url, 200, timeout=60)
            assert "\ntidings_broker_connected 1.0\n" in await _text(gateway.url + "/metrics")
            assert await _broadcast(gateway.url, range(20, 30)) == 200
            after = await staying.events(10, timeout=60)
            assert [frame["data"]["seq"] for frame in after] == list(range(20, 30))
        async with connect(gateway.ws_url) as back:
            await back.subscribe(CHANNEL, since=last)
            resumed = await back.events(20, timeout=60)
            assert [frame["data"]["seq"] for frame in resumed] == list(range(10, 30))
    finally:
        assert gateway.stop(timeout=30) == 0, gateway.output()
