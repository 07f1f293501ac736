"""Fan-out across gateway nodes (design.md §3 flaws 1 and 2, §5 delivery; ADR 0005).

Three real ``tidings serve`` processes share one Kafka topic prefix and consumer group base. A
message entering at any node (HTTP broadcast or a client event) must reach the subscribers of its
channel on every node, each exactly once, in the channel's publish order.
"""

from __future__ import annotations

import random
import secrets
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio

from .conftest import PRESENCE_TIMEOUT, Cluster, Node
from .helpers import WAIT, Listener, listening, publish, seqs, wait_health

pytestmark = pytest.mark.kafka

CHANNELS = 20
PER_CLIENT = 5
CLIENTS_PER_NODE = 4
MESSAGES = 1_200
BATCH = 100


async def test_fan_out_of_many_channels_to_clients_on_every_node(trio_nodes: list[Node]) -> None:
    run = secrets.token_hex(3)
    channels = [f"chat.f{run}.{index}" for index in range(CHANNELS)]
    rng = random.Random(run)
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        clients: list[tuple[Listener, list[str]]] = []
        for node in trio_nodes:
            for index in range(CLIENTS_PER_NODE):
                listener = await stack.enter_async_context(
                    listening(nursery, node, name=f"{node.id}/{index}")
                )
                held = sorted(rng.sample(channels, PER_CLIENT))
                for channel in held:
                    await listener.subscribe(channel)
                clients.append((listener, held))
        # Overlap: most channels are held on more than one node.
        holders = {
            channel: {listener.node.id for listener, held in clients if channel in held}
            for channel in channels
        }
        assert sum(len(nodes) > 1 for nodes in holders.values()) >= CHANNELS // 2, holders

        # Warm-up: one message per channel creates its topic; every node discovers it.
        await publish(
            trio_nodes[0],
            [{"channel": channel, "event": "warm-up", "data": {"seq": -1}} for channel in channels],
        )
        for listener, held in clients:
            await listener.wait_for(
                lambda listener=listener, held=held: all(
                    listener.events(channel, "warm-up") for channel in held
                ),
                "warm-up message on every channel",
                timeout=WAIT,
            )

        # 1,200 messages, batches of 100 sent in order to the nodes in turn.
        counters = dict.fromkeys(channels, 0)
        messages: list[dict[str, Any]] = []
        for _ in range(MESSAGES):
            channel = channels[rng.randrange(CHANNELS)]
            data = {"seq": counters[channel]}
            messages.append({"channel": channel, "event": "note", "data": data})
            counters[channel] += 1
        for start in range(0, MESSAGES, BATCH):
            node = trio_nodes[(start // BATCH) % len(trio_nodes)]
            answers = await publish(node, messages[start : start + BATCH])
            assert len(answers) == len(messages[start : start + BATCH])

        for listener, held in clients:
            expected = sum(counters[channel] for channel in held)
            await listener.wait_for(
                lambda listener=listener, expected=expected: (
                    len(listener.events(event="note")) >= expected
                ),
                f"{expected} messages",
                timeout=WAIT,
            )
        # Then nothing else arrives: a ping is answered after everything queued before it.
        for listener, _ in clients:
            await listener.ping()

        for listener, held in clients:
            notes = listener.events(event="note")
            assert {frame["channel"] for frame in notes} <= set(held), (
                f"{listener} got messages of channels it does not hold"
            )
            for channel in held:
                got = seqs(listener.events(channel, "note"))
                assert got == list(range(counters[channel])), (
                    f"{listener} on {channel}: expected 0..{counters[channel] - 1} once each in "
                    f"order, got {len(got)} messages; first differences: "
                    f"{[(i, s) for i, s in enumerate(got) if s != i][:5]}"
                )
                positions = [frame["position"] for frame in listener.events(channel, "note")]
                assert len(set(positions)) == len(positions)
            assert listener.closed is None


async def test_http_broadcast_entering_at_any_node_reaches_every_node(
    trio_nodes: list[Node],
) -> None:
    channel = f"chat.h{secrets.token_hex(3)}"
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        listeners = [
            await stack.enter_async_context(listening(nursery, node, name=node.id))
            for node in trio_nodes
        ]
        for listener in listeners:
            await listener.subscribe(channel)
        for index, node in enumerate(trio_nodes):
            await publish(node, {"channel": channel, "event": "note", "data": {"seq": index}})
        for listener in listeners:
            await listener.wait_for(
                lambda listener=listener: len(listener.events(channel)) >= len(trio_nodes),
                "a message from every node",
            )
            await listener.ping()
            assert seqs(listener.events(channel)) == list(range(len(trio_nodes)))


async def test_client_event_reaches_other_nodes_but_not_its_sender(
    trio_nodes: list[Node],
) -> None:
    room = f"private-room.e{secrets.token_hex(3)}"
    a, b, c = trio_nodes
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        sender = await stack.enter_async_context(listening(nursery, a, "ann", name="sender"))
        beside = await stack.enter_async_context(listening(nursery, a, "al", name="beside"))
        on_b = await stack.enter_async_context(listening(nursery, b, "bob", name="on-b"))
        on_c = await stack.enter_async_context(listening(nursery, c, "cy", name="on-c"))
        others = [beside, on_b, on_c]
        for listener in [sender, *others]:
            await listener.subscribe(room)
        # The application opens the room: its broadcast creates the room's topic, which client
        # events never do (ADR 0016).
        await publish(a, {"channel": room, "event": "opened", "data": None})
        for listener in [sender, *others]:
            await listener.wait_for(
                lambda listener=listener: listener.events(room, "opened"), "the room opened"
            )
        for seq in range(3):
            await sender.client.send(
                type="event", channel=room, event="client-typing", data={"seq": seq}
            )
        for listener in others:
            await listener.wait_for(
                lambda listener=listener: len(listener.events(room, "client-typing")) >= 3,
                "three client events",
            )
        # The sender's node dispatched them to ``beside`` already: anything for the sender would
        # be queued before the pong.
        await sender.ping()
        for listener in others:
            await listener.ping()
            assert seqs(listener.events(room, "client-typing")) == [0, 1, 2], listener
        assert sender.events(room, "client-typing") == [], sender.events(room)
        assert sender.of_type("error") == [], sender.of_type("error")

        # And from a client on another node, back to the clients of the first.
        await on_c.client.send(type="event", channel=room, event="client-reply", data={"seq": 9})
        for listener in (sender, beside, on_b):
            await listener.wait_for(
                lambda listener=listener: listener.events(room, "client-reply"),
                "the reply",
            )
        await on_c.ping()
        assert on_c.events(room, "client-reply") == []


async def test_healthz_reports_the_cluster_and_drops_a_killed_node(
    cluster: Cluster, trio_nodes: list[Node]
) -> None:
    # Traffic on a topic, so every feed has fetched and knows its lag.
    channel = f"chat.z{secrets.token_hex(3)}"
    await publish(trio_nodes[0], {"channel": channel, "event": "note", "data": {"seq": 0}})
    victim = await trio.to_thread.run_sync(cluster.start, "zed")
    nodes = [*trio_nodes, victim]
    ids = {node.id for node in nodes}
    for node in nodes:
        report = await wait_health(
            node,
            lambda report, node=node: (
                set(report["cluster"]) >= ids - {node.id}
                and isinstance(report["broker"]["lag"], int)
            ),
            "listing every other node with a lag number",
        )
        assert report["status"] == "ok", report
        assert report["node"] == node.id
        assert report["broker"]["name"] == "kafka"
        assert report["broker"]["connected"] is True, report
        assert report["broker"]["error"] is None, report
        assert report["broker"]["lag"] >= 0
        assert node.id not in report["cluster"], "a node lists itself"
        for seconds in report["cluster"].values():
            assert 0 <= seconds <= PRESENCE_TIMEOUT, report

    await trio.to_thread.run_sync(victim.process.kill)
    killed_at = trio.current_time()
    latencies: dict[str, float] = {}

    async def dropped(node: Node) -> None:
        await wait_health(
            node,
            lambda report: victim.id not in report["cluster"],
            f"without {victim.id}",
            timeout=PRESENCE_TIMEOUT + 5,
            interval=0.05,
        )
        latencies[node.id] = round(trio.current_time() - killed_at, 2)

    async with trio.open_nursery() as nursery:
        for node in trio_nodes:
            nursery.start_soon(dropped, node)
    print(f"\n/healthz dropped a node killed -9 after {latencies} s")
    for node in trio_nodes:
        report = await wait_health(node, lambda report: True, "answering")
        assert report["status"] == "ok", report
        assert set(report["cluster"]) >= {n.id for n in trio_nodes} - {node.id}, report


def _hold_group(bootstrap: str, group: str, topic: str) -> Any:
    """A member of ``group`` that joined and then stops polling: a node joining the group later
    waits for it to rejoin until its rebalance timeout (6 s) expires."""
    from kafka import KafkaConsumer

    member = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        max_poll_interval_ms=6000,
    )
    member.subscribe([topic])
    for _ in range(200):  # 20 s at most
        if member.assignment():
            return member
        member.poll(timeout_ms=100)
    member.close()
    raise AssertionError(f"could not join {group}")


async def test_a_node_slow_to_get_its_partitions_delivers_what_is_published_after_a_subscribe(
    cluster: Cluster, trio_nodes: list[Node]
) -> None:
    """A client subscribes on a node that has just started, to a channel whose topic exists;
    what is published from then on must reach it, with or without ``since``, however long Kafka
    takes to give the node's consumer group its partitions.

    On a production broker that takes seconds (``group.initial.rebalance.delay.ms`` is 3 s by
    default; the test broker sets 0), so a member of the new node's group that is slow to
    rejoin holds the group up here for the same effect.
    """
    a, b, _ = trio_nodes
    channel = f"chat.n{secrets.token_hex(3)}"
    count = 20
    name = "newcomer"
    node_id = f"{name}-{cluster.run}"
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        old = await stack.enter_async_context(listening(nursery, a, name="on an old node"))
        await old.subscribe(channel)
        await publish(a, {"channel": channel, "event": "note", "data": {"seq": -1}})
        await old.wait_for(lambda: old.events(channel), "the first message")
        last = old.events(channel)[-1]["position"]

        member = await trio.to_thread.run_sync(
            _hold_group,
            cluster.bootstrap,
            f"{cluster.group}.{node_id}",
            f"{cluster.prefix}-presence",
        )
        stack.push_async_callback(trio.to_thread.run_sync, member.close)
        new = await trio.to_thread.run_sync(cluster.start, name)
        fresh = await stack.enter_async_context(listening(nursery, new, name="fresh"))
        await fresh.subscribe(channel)
        resuming = await stack.enter_async_context(listening(nursery, new, name="resuming"))
        await resuming.subscribe(channel, since=last)
        for seq in range(count):
            await publish(b, {"channel": channel, "event": "note", "data": {"seq": seq}})
        # Probes until one reaches both: by then every earlier message of the channel that
        # the node is going to deliver has been delivered (one partition, one order).
        with trio.fail_after(WAIT):
            while not (fresh.events(channel, "probe") and resuming.events(channel, "probe")):
                await publish(b, {"channel": channel, "event": "probe", "data": None})
                with trio.move_on_after(0.25):
                    await fresh.wait_for(lambda: fresh.events(channel, "probe"), "a probe")
        got = {
            listener.name: seqs(listener.events(channel, "note")) for listener in (fresh, resuming)
        }
        assert got == {"fresh": list(range(count)), "resuming": list(range(count))}, got
    code = await trio.to_thread.run_sync(new.process.stop)
    assert code == 0, new.process.output()
