"""A broker that stops answering and comes back, on a SECOND broker.

The run's broker serves every other test, so this module starts its own (``KafkaNode``: free
ports and a state directory of its own) and always stops and wipes it afterwards. The outage is
the broker process paused (SIGSTOP) and resumed (SIGCONT): to a client that is a broker that
stops answering, and it comes back at once, without the 15-30 s a restart
of a KRaft node costs.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import time
from collections.abc import Iterator

import pytest

from tidings.domain.errors import BrokerUnavailable

from ..support.kafka import KafkaNode
from .helpers import Cli, container_class, load_settings, publish_all, stop_process

pytestmark = pytest.mark.kafka


class SecondBroker:
    """The broker this module started; paused and resumed by its own pid."""

    def __init__(self, node: KafkaNode) -> None:
        node.start()
        self.node = node
        self.bootstrap = node.bootstrap
        self.pid = node.pid

    @contextlib.contextmanager
    def unresponsive(self) -> Iterator[None]:
        """The broker stops answering for the duration of the block (always resumed).

        SIGSTOP reaches a JVM's hundreds of threads one by one; on a busy machine a request sent
        right after the signal could still be answered, so the block starts only once every
        thread of the process is stopped.
        """
        os.kill(self.pid, signal.SIGSTOP)
        try:
            self._wait_until_stopped()
            yield
        finally:
            self.resume()

    def _wait_until_stopped(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(_thread_state(stat) in ("T", "t") for stat in self._thread_stats()):
                return
            time.sleep(0.01)
        raise AssertionError(f"broker {self.pid} did not stop within {timeout:g}s of SIGSTOP")

    def _thread_stats(self) -> list[str]:
        stats = []
        for task in os.listdir(f"/proc/{self.pid}/task"):
            path = f"/proc/{self.pid}/task/{task}/stat"
            with contextlib.suppress(FileNotFoundError), open(path) as file:
                stats.append(file.read())
        return stats

    def resume(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGCONT)


def _thread_state(stat: str) -> str:
    """The state letter of a ``/proc/PID/task/TID/stat`` line (after the parenthesised name)."""
    return stat.rsplit(")", 1)[1].split()[0]


@pytest.fixture(scope="module")
def second_broker(kafka_bootstrap: str) -> Iterator[SecondBroker]:
    node = KafkaNode()
    try:
        broker = SecondBroker(node)
        try:
            yield broker
        finally:
            broker.resume()
    finally:
        node.wipe()


@pytest.fixture
def outage_env(second_broker: SecondBroker) -> dict[str, str]:
    run = secrets.token_hex(4)
    return {
        "REALTIME_BROKER": "kafka",
        "KAFKA_BROKERS": second_broker.bootstrap,
        "KAFKA_TOPIC_PREFIX": f"o{run}",
        "KAFKA_CONSUMER_GROUP": f"og{run}",
        "KAFKA_TIMEOUT": "2",
    }


def _outcome(pending: object, wait: float) -> str:
    """``ok``, ``unavailable`` or ``pending`` (still unresolved after ``wait`` seconds)."""
    try:
        pending.result(timeout=wait)  # type: ignore[attr-defined]
    except BrokerUnavailable:
        return "unavailable"
    except TimeoutError:
        return "pending"
    return "ok"


def test_every_broadcast_fails_in_time_while_the_broker_does_not_answer(
    second_broker: SecondBroker, outage_env: dict[str, str]
) -> None:
    """publisher.py: "Every future resolves within KAFKA_TIMEOUT ... or with BrokerUnavailable".

    Not just the first one: the second and third broadcast of the outage must fail as fast.
    """
    container = container_class().for_settings(load_settings(outage_env))
    try:
        realtime = container.realtime()
        realtime.broadcast("chat.1", "before", {"n": 0})  # connected; the topic is known
        outcomes = []
        with second_broker.unresponsive():
            for attempt in range(3):
                started = time.monotonic()
                pending = realtime.broadcast_nowait("chat.1", "during", {"n": attempt})
                outcomes.append((_outcome(pending, 6), round(time.monotonic() - started, 1)))
    finally:
        container.shutdown_resources()
    assert [outcome for outcome, _ in outcomes] == ["unavailable"] * 3, (
        f"(outcome, seconds) of 3 broadcasts with KAFKA_TIMEOUT=2 and the broker down: {outcomes}"
    )
    assert all(seconds < 5 for _, seconds in outcomes), outcomes


def test_publisher_works_again_once_the_broker_answers_again(
    second_broker: SecondBroker, outage_env: dict[str, str]
) -> None:
    settings = load_settings(outage_env)
    container = container_class().for_settings(settings)
    try:
        realtime = container.realtime()
        realtime.broadcast("chat.1", "before", {"n": 0})
        with second_broker.unresponsive():
            during = realtime.broadcast_nowait("chat.1", "during", {"n": 1})
            assert _outcome(during, 8) == "unavailable"
        # The broker is healthy again: a fresh publisher gets through ...
        publish_all(settings, [("chat.1", "fresh-publisher", {"n": 2})], timeout=30)
        # ... and so must the one that lived through the outage.
        after = realtime.broadcast_nowait("chat.1", "after", {"n": 3})
        outcome = _outcome(after, 10)
    finally:
        container.shutdown_resources()
    assert outcome == "ok", (
        f"a broadcast after the broker came back is {outcome!r} after 10s, while a fresh "
        "publisher on the same broker succeeded: the publisher stays wedged after an outage"
    )


def test_consumer_rides_out_a_broker_outage(
    second_broker: SecondBroker, outage_env: dict[str, str], cli: Cli
) -> None:
    """``tidings kafka consume`` keeps running through an outage and carries on afterwards."""
    settings = load_settings(outage_env)
    [(before, _)] = publish_all(settings, [("chat.1", "before", {"n": 0})])
    started = time.monotonic()
    consumer = cli.start(
        ["kafka", "consume", "--channels", "chat.1", "--timeout", "200", "--group-mode", "fanout"],
        {**outage_env, "REALTIME_NODE_ID": "n1"},
    )
    try:
        consumer.stdout.wait_for(re.compile(before.id), 30)
        with second_broker.unresponsive():
            # Longer than the consumer's request timeout (5 s), shorter than its session (45 s):
            # its requests fail, its group membership survives.
            time.sleep(6)
            assert consumer.process.poll() is None, consumer.output()
        [(after, _)] = publish_all(settings, [("chat.1", "after", {"n": 1})], timeout=30)
        consumer.stdout.wait_for(re.compile(after.id), 60)
    finally:
        run = stop_process(consumer, started)
    assert run.code == 0, run.describe()
    assert run.ids() == [before.id, after.id], run.describe()
    # kafka-python logged each failed request and reconnection attempt (414 lines in a 50 s
    # outage); the command's logging says one line when Kafka stops answering, one when it is
    # back, and lets at most one other kafka warning through (ADR 0023).
    from_kafka = [line for line in run.stderr if re.search(r" (INFO|WARNING|ERROR) kafka", line)]
    lost = [line for line in from_kafka if re.search(r"Kafka at \S+ unreachable: ", line)]
    back = [line for line in from_kafka if line.endswith(" answers again")]
    assert len(lost) == 1 and len(back) == 1, run.describe()
    assert f"Kafka at {outage_env['KAFKA_BROKERS']} unreachable" in lost[0], run.describe()
    assert "<KafkaConnection" not in lost[0], run.describe()
    assert len(from_kafka) <= 3, run.describe()
