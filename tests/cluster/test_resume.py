"""Resume across gateway nodes and restarts (design.md §5 resume, shutdown; ADR 0005, ADR 0008).

Positions name Kafka offsets, not a gateway's memory: a client whose node dies resumes on any
other node with ``since`` and gets exactly what it missed, then the live stream. A node restarted
with the same node id resumes its own consumer group (one group per node id, never one per run).
"""

from __future__ import annotations

import json
import secrets
import subprocess
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

from tests.support.processes import TIDINGS

from .conftest import Cluster, Node
from .helpers import WAIT, Listener, listening, publish, seqs, wait_health

pytestmark = pytest.mark.kafka


class Publisher:
    """Publishes ``total`` messages of one channel through a node's HTTP API, paced in small
    batches so that a test can kill or restart nodes while the stream flows."""

    def __init__(self, node: Node, channel: str, total: int, batch: int = 10) -> None:
        self.node = node
        self.channel = channel
        self.total = total
        self.batch = batch
        self.published = 0
        self.done = trio.Event()
        self._progress = trio.Event()

    async def run(self) -> None:
        while self.published < self.total:
            count = min(self.batch, self.total - self.published)
            await publish(
                self.node,
                [
                    {"channel": self.channel, "event": "note", "data": {"seq": self.published + i}}
                    for i in range(count)
                ],
            )
            self.published += count
            self._progress.set()
            self._progress = trio.Event()
            await trio.sleep(0.02)  # pacing: the stream lasts a few seconds
        self.done.set()

    async def wait_published(self, count: int, timeout: float = WAIT) -> None:
        with trio.fail_after(timeout):
            while self.published < count:
                await self._progress.wait()


def received(listener: Listener, channel: str) -> list[dict[str, Any]]:
    return listener.events(channel, "note")


def assert_exactly_once_in_order(got: list[int], total: int, what: str) -> None:
    duplicates = sorted({s for s in got if got.count(s) > 1})
    missing = sorted(set(range(total)) - set(got))
    assert got == list(range(total)), (
        f"{what}: {len(got)} messages for {total} published; duplicates {duplicates[:10]}, "
        f"missing {missing[:10]}"
    )


async def test_a_client_of_a_killed_node_resumes_on_another(
    cluster: Cluster, trio_nodes: list[Node]
) -> None:
    channel = f"chat.r{secrets.token_hex(3)}"
    _, b, c = trio_nodes
    doomed = await trio.to_thread.run_sync(cluster.start, "doomed")
    total = 400
    publisher = Publisher(b, channel, total)
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        first = await stack.enter_async_context(listening(nursery, doomed, name="first"))
        await first.subscribe(channel)
        # The channel's topic exists and every node reads it before the stream starts.
        await publish(b, {"channel": channel, "event": "warm-up", "data": None})
        await first.wait_for(lambda: first.events(channel, "warm-up"), "the warm-up message")
        nursery.start_soon(publisher.run)
        await first.wait_for(lambda: len(received(first, channel)) >= 60, "60 messages")

        await trio.to_thread.run_sync(doomed.process.kill)
        await first.wait_for(lambda: first.closed, "the connection to drop")
        before = received(first, channel)
        assert_exactly_once_in_order(seqs(before), len(before), "before the kill")
        last = before[-1]["position"]
        # Resume once more has been published while the client was away.
        await publisher.wait_published(min(total, len(before) + 100))
        missed_at_resume = publisher.published - len(before)

        second = await stack.enter_async_context(listening(nursery, c, name="second"))
        subscribed = await second.subscribe(channel, since=last)
        assert subscribed["data"]["position"] == last, subscribed
        await publisher.done.wait()
        await second.wait_for(
            lambda: len(received(second, channel)) >= total - len(before),
            f"the {total - len(before)} messages after the kill",
            timeout=WAIT,
        )
        await second.ping()
        after = received(second, channel)
        assert second.of_type("error") == [], second.of_type("error")
        assert_exactly_once_in_order(seqs(before) + seqs(after), total, "across the resume")
        positions = [frame["position"] for frame in before + after]
        assert len(set(positions)) == total
        print(
            f"\nresume after kill -9: {len(before)} received on the killed node, "
            f"{missed_at_resume} published while away, {len(after)} received after resuming "
            f"on another node ({total} in all, no gap, no duplicate)"
        )


def _foreign_position(env: dict[str, str], channel: str) -> str:
    """Publish on ``channel`` in another cluster (another topic prefix); its position."""
    result = subprocess.run(
        [TIDINGS, "publish", channel, "note", '{"seq": -1}'],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    position: str = json.loads(result.stdout)["position"]
    return position


async def test_positions_of_another_cluster_or_channel_are_refused_with_410(
    cluster: Cluster, trio_nodes: list[Node], kafka_env: dict[str, str]
) -> None:
    from tests.support.processes import process_env

    channel = f"chat.x{secrets.token_hex(3)}"
    other = f"chat.y{secrets.token_hex(3)}"
    a, b, _ = trio_nodes
    foreign_env = process_env(**kafka_env)
    try:
        foreign = await trio.to_thread.run_sync(_foreign_position, foreign_env, channel)
        (ours,) = await publish(a, [{"channel": other, "event": "note", "data": {"seq": -1}}])
        await publish(a, {"channel": channel, "event": "note", "data": {"seq": -2}})
        async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
            client = await stack.enter_async_context(listening(nursery, b, name="client"))
            for since in (foreign, ours["position"]):
                errors = len(client.of_type("error", channel))
                await client.subscribe(channel, since=since)
                error = await client.wait_for(
                    lambda errors=errors: client.of_type("error", channel)[errors:], "error 410"
                )
                assert error[0]["data"]["code"] == 410, error
                assert error[0]["data"]["message"], error
                # Still subscribed: the live stream flows.
                await publish(a, {"channel": channel, "event": "note", "data": {"seq": 7}})
                await client.wait_for(
                    lambda: any(s == 7 for s in seqs(received(client, channel))), "a live message"
                )
                await client.client.send(type="unsubscribe", channel=channel)
                await client.wait_for(
                    lambda: client.of_type("unsubscribed", channel), "unsubscribed"
                )
                client.frames.clear()
            assert client.closed is None
    finally:
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=kafka_env["KAFKA_BROKERS"])
        try:
            prefix = kafka_env["KAFKA_TOPIC_PREFIX"]
            ours_topics = [t for t in admin.list_topics() if t.startswith(prefix)]
            if ours_topics:
                admin.delete_topics(ours_topics)
        finally:
            admin.close()


async def test_a_restarted_node_resumes_its_clients_and_its_group(
    cluster: Cluster, trio_nodes: list[Node]
) -> None:
    from kafka import KafkaAdminClient, TopicPartition

    channel = f"chat.s{secrets.token_hex(3)}"
    _, b, _ = trio_nodes
    node = await trio.to_thread.run_sync(cluster.start, "phoenix")
    group = f"{cluster.group}.{node.id}"
    tp = TopicPartition(cluster.topic(channel), 0)
    total = 500
    publisher = Publisher(b, channel, total)
    clients = 3

    def committed() -> int | None:
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        try:
            offsets = admin.list_group_offsets(group).get(group, {})
        finally:
            admin.close()
        found = offsets.get(tp)
        return None if found is None else found.offset

    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        firsts = []
        for index in range(clients):
            listener = await stack.enter_async_context(
                listening(nursery, node, name=f"client {index}")
            )
            await listener.subscribe(channel)
            firsts.append(listener)
        await publish(b, {"channel": channel, "event": "warm-up", "data": None})
        for listener in firsts:
            await listener.wait_for(
                lambda listener=listener: listener.events(channel, "warm-up"), "the warm-up"
            )
        nursery.start_soon(publisher.run)
        for listener in firsts:
            await listener.wait_for(
                lambda listener=listener: len(received(listener, channel)) >= 50, "50 messages"
            )

        code = await trio.to_thread.run_sync(node.process.stop)
        assert code == 0, node.process.output()
        for listener in firsts:
            await listener.wait_for(lambda listener=listener: listener.closed, "the close")
            assert listener.closed == 1001, listener.closed
        stopped_at = await trio.to_thread.run_sync(committed)
        assert stopped_at is not None, "the stopping node committed nothing"
        # Messages are published while the node is down.
        await publisher.wait_published(min(total, publisher.published + 60))

        await trio.to_thread.run_sync(cluster.restart, node)
        seconds = []
        for index, first in enumerate(firsts):
            before = received(first, channel)
            assert_exactly_once_in_order(seqs(before), len(before), f"{first} before the restart")
            again = await stack.enter_async_context(
                listening(nursery, node, name=f"client {index} again")
            )
            await again.subscribe(channel, since=before[-1]["position"])
            seconds.append(again)
        await publisher.done.wait()
        counts = []
        for first, again in zip(firsts, seconds, strict=True):
            before = received(first, channel)
            await again.wait_for(
                lambda again=again, before=before: (
                    len(received(again, channel)) >= total - len(before)
                ),
                f"the {total - len(before)} messages after the restart",
            )
            await again.ping()
            after = received(again, channel)
            assert again.of_type("error") == [], again.of_type("error")
            assert_exactly_once_in_order(
                seqs(before) + seqs(after), total, f"{again} across the restart"
            )
            counts.append((len(before), len(after)))
        print(
            f"\nresume across a restart: (before, after) per client {counts}; the group had "
            f"committed offset {stopped_at} of {total + 1} when the node stopped"
        )

    # The restarted node's group took up from its committed offset: it fed every message
    # published while it was down (it did not skip to the end), then committed up to the end.
    report = await wait_health(
        node, lambda report: report["broker"]["lag"] == 0, "caught up (lag 0)"
    )
    end = total + 1  # the warm-up message, then the stream
    assert report["broker"]["messages"] >= end - stopped_at, (report, stopped_at)
    with trio.fail_after(WAIT):
        while await trio.to_thread.run_sync(committed) != end:  # noqa: ASYNC110 (polls Kafka)
            await trio.sleep(0.1)

    # One fan-out group per node id, whatever the restarts: none leaked.
    def groups() -> set[str]:
        admin = KafkaAdminClient(bootstrap_servers=cluster.bootstrap)
        try:
            return {
                found["group_id"]
                for found in admin.list_groups()
                if found["group_id"].startswith(cluster.group)
            }
        finally:
            admin.close()

    expected = {f"{cluster.group}.{node_id}" for node_id in cluster.started_ids}
    assert await trio.to_thread.run_sync(groups) == expected
    code = await trio.to_thread.run_sync(node.process.stop)
    assert code == 0, node.process.output()
