"""Presence across gateway nodes (design.md §3 flaw 8, §5 presence).

Every node's clients see one member list per presence channel; several connections of a user,
on one node or several, are one member; a node's members leave on the other nodes when it stops
(at once, by its goodbye record) or dies (within REALTIME_PRESENCE_TIMEOUT); a node that starts
late knows the members at once, from the compacted presence topic.
"""

from __future__ import annotations

import secrets
import signal
from contextlib import AsyncExitStack, suppress
from typing import Any

import pytest
import trio

from .conftest import PRESENCE_TIMEOUT, Cluster, Node
from .helpers import Listener, health, listening, wait_health

pytestmark = pytest.mark.kafka

BOUND = PRESENCE_TIMEOUT + 5
"""How long a dead node's members may stay: the presence timeout plus a margin."""


def info(user: str) -> dict[str, Any]:
    return {"name": user.title()}


async def join_all(
    nursery: trio.Nursery,
    stack: AsyncExitStack,
    room: str,
    placement: list[tuple[Node, str]],
    *,
    present: frozenset[str] | set[str] = frozenset(),
) -> list[Listener]:
    """Connect each (node, user), subscribe to ``room`` one after the other, and wait until
    every client's member list is those users plus the ``present`` ones."""
    listeners = []
    for node, user in placement:
        listener = await stack.enter_async_context(
            listening(nursery, node, user, name=f"{user}@{node.id}", info=info(user))
        )
        subscribed = await listener.subscribe(room)
        assert isinstance(subscribed["data"]["members"], list), subscribed
        listeners.append(listener)
    everyone = {user for _, user in placement} | set(present)
    for listener in listeners:
        await listener.wait_members(room, everyone)
    return listeners


def assert_clean(listeners: list[Listener], room: str) -> None:
    for listener in listeners:
        _, anomalies = listener.presence(room)
        assert anomalies == [], f"{listener}: {anomalies}; events {listener.presence_events(room)}"


async def test_member_lists_converge_and_fresh_subscribers_get_the_full_list(
    trio_nodes: list[Node],
) -> None:
    room = f"presence-chat.{secrets.token_hex(3)}"
    a, b, c = trio_nodes
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        first = await join_all(nursery, stack, room, [(a, "ann"), (b, "bob"), (c, "cy")])
        # Each one saw exactly the joins of those who came after it (if not already listed).
        for listener in first:
            joins = [user for kind, user in listener.presence_events(room) if kind == "join"]
            assert len(joins) == len(set(joins)), listener.presence_events(room)
        # A fresh subscriber on each node gets the whole list in ``subscribed``, no waiting.
        # (Each is a second connection of a user held on another node, so nobody joins.)
        fresh = []
        for node, user in [(a, "bob"), (b, "cy"), (c, "ann")]:
            listener = await stack.enter_async_context(
                listening(nursery, node, user, name=f"fresh {user}@{node.id}", info=info(user))
            )
            subscribed = await listener.subscribe(room)
            members = sorted(subscribed["data"]["members"], key=lambda m: m["user_id"])
            assert members == [
                {"user_id": user, "user_info": info(user)} for user in ("ann", "bob", "cy")
            ], f"{listener}: {members}"
            fresh.append(listener)
        # Sync point: a join on each node; before it nobody saw any presence change.
        for node, user in [(a, "dee"), (b, "eli"), (c, "fox")]:
            listener = await stack.enter_async_context(
                listening(nursery, node, user, name=f"{user}@{node.id}", info=info(user))
            )
            await listener.subscribe(room)
        everyone = {"ann", "bob", "cy", "dee", "eli", "fox"}
        for listener in first + fresh:
            await listener.wait_members(room, everyone)
        assert_clean(first + fresh, room)
        for listener in first + fresh:  # nobody left at any point
            assert all(kind == "join" for kind, _ in listener.presence_events(room)), (
                listener,
                listener.presence_events(room),
            )


async def test_a_user_on_two_nodes_is_one_member(trio_nodes: list[Node]) -> None:
    room = f"presence-chat.{secrets.token_hex(3)}"
    a, b, c = trio_nodes
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        observers = await join_all(nursery, stack, room, [(a, "ann"), (b, "bob"), (c, "cy")])
        # Uma connects on A and on B: one join everywhere.
        uma_a = await stack.enter_async_context(listening(nursery, a, "uma", info=info("uma")))
        uma_b = await stack.enter_async_context(listening(nursery, b, "uma", info=info("uma")))
        await uma_a.subscribe(room)
        await uma_b.subscribe(room)
        # Wes joins on B after Uma: B's records of the room are whole snapshots in order, so a
        # node that shows Wes also knows Uma's connection on B.
        wes = await stack.enter_async_context(listening(nursery, b, "wes", info=info("wes")))
        await wes.subscribe(room)
        everyone = {"ann", "bob", "cy", "uma", "wes"}
        for listener in [*observers, uma_a, uma_b]:
            await listener.wait_members(room, everyone)
        # Her connection on A goes; a join on A afterwards is the sync point (A publishes its
        # part of the room as one record per change, in order), so a wrong leave of Uma would
        # have arrived before it.
        await uma_a.client.ws.aclose()
        vic = await stack.enter_async_context(listening(nursery, a, "vic", info=info("vic")))
        await vic.subscribe(room)
        everyone.add("vic")
        for listener in [*observers, uma_b]:
            await listener.wait_members(room, everyone)
        for listener in observers:
            assert ("leave", "uma") not in listener.presence_events(room), (
                listener,
                listener.presence_events(room),
            )
        # Her last connection goes: exactly one leave, on every node.
        await uma_b.client.ws.aclose()
        everyone.discard("uma")
        for listener in [*observers, vic]:
            await listener.wait_members(room, everyone)
        assert_clean([*observers, vic], room)
        for listener in observers:
            events = listener.presence_events(room)
            assert events.count(("join", "uma")) == 1, (listener, events)
            assert events.count(("leave", "uma")) == 1, (listener, events)


async def test_members_of_a_killed_node_leave_within_the_timeout(
    cluster: Cluster, trio_nodes: list[Node]
) -> None:
    room = f"presence-chat.{secrets.token_hex(3)}"
    a, b, c = trio_nodes
    doomed = await trio.to_thread.run_sync(cluster.start, "doomed")
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        observers = await join_all(nursery, stack, room, [(a, "ann"), (b, "bob"), (c, "cy")])
        # Dora is only on the doomed node; Ann has a second connection there.
        on_doomed = await join_all(
            nursery, stack, room, [(doomed, "dora"), (doomed, "ann")], present={"bob", "cy"}
        )
        for listener in observers:
            await listener.wait_members(room, {"ann", "bob", "cy", "dora"})

        await trio.to_thread.run_sync(doomed.process.kill)
        killed_at = trio.current_time()
        for listener in observers:
            await listener.wait_for(
                lambda listener=listener: listener.arrival(room, "presence.leave", "dora"),
                "Dora's leave",
                timeout=BOUND,
            )
        latencies = {
            listener.node.id: round(listener.arrival(room, "presence.leave", "dora") - killed_at, 2)
            for listener in observers
        }
        print(f"\npresence leave after kill -9: {latencies} s (timeout {PRESENCE_TIMEOUT} s)")
        assert max(latencies.values()) < BOUND, latencies
        for listener in on_doomed:
            await listener.wait_for(lambda listener=listener: listener.closed, "the drop")
        # Ann stays: her connection on A is alive.
        for listener in observers:
            await listener.ping()
            assert listener.presence(room)[0] == {"ann", "bob", "cy"}, listener
            assert ("leave", "ann") not in listener.presence_events(room), listener
        assert_clean(observers, room)
        # A fresh subscriber sees the list without the dead node's members.
        fresh = await stack.enter_async_context(listening(nursery, b, "cy", info=info("cy")))
        subscribed = await fresh.subscribe(room)
        assert {m["user_id"] for m in subscribed["data"]["members"]} == {"ann", "bob", "cy"}


async def test_members_of_a_stopped_node_leave_at_once(
    cluster: Cluster, trio_nodes: list[Node]
) -> None:
    room = f"presence-chat.{secrets.token_hex(3)}"
    a, b, c = trio_nodes
    leaving = await trio.to_thread.run_sync(cluster.start, "leaving")
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        observers = await join_all(nursery, stack, room, [(a, "ann"), (b, "bob"), (c, "cy")])
        (eve,) = await join_all(
            nursery, stack, room, [(leaving, "eve")], present={"ann", "bob", "cy"}
        )
        for listener in observers:
            await listener.wait_members(room, {"ann", "bob", "cy", "eve"})

        leaving.process.signal(signal.SIGTERM)
        stopped_at = trio.current_time()
        for listener in observers:
            await listener.wait_for(
                lambda listener=listener: listener.arrival(room, "presence.leave", "eve"),
                "Eve's leave",
                timeout=PRESENCE_TIMEOUT,
            )
        latencies = {
            listener.node.id: round(listener.arrival(room, "presence.leave", "eve") - stopped_at, 2)
            for listener in observers
        }
        print(f"\npresence leave after SIGTERM: {latencies} s (timeout {PRESENCE_TIMEOUT} s)")
        assert max(latencies.values()) < PRESENCE_TIMEOUT / 2, latencies
        code = await trio.to_thread.run_sync(leaving.process.wait)
        assert code == 0, leaving.process.output()
        await eve.wait_for(lambda: eve.closed, "the close")
        assert eve.closed == 1001, eve.closed
        assert_clean(observers, room)
        # The goodbye also took the node off every other node's cluster list at once.
        for node in trio_nodes:
            _, report = await health(node)
            assert leaving.id not in report["cluster"], report


async def test_a_node_killed_and_restarted_at_once_drops_its_old_members_at_once(
    cluster: Cluster, trio_nodes: list[Node]
) -> None:
    """A node back under its own id with a new epoch: what its previous run held is gone, at
    once, without waiting for the timeout; its clients reconnect and join again."""
    room = f"presence-chat.{secrets.token_hex(3)}"
    a, b, c = trio_nodes
    phoenix = await trio.to_thread.run_sync(cluster.start, "phoenix")
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        observers = await join_all(nursery, stack, room, [(a, "ann"), (b, "bob"), (c, "cy")])
        (hal,) = await join_all(
            nursery, stack, room, [(phoenix, "hal")], present={"ann", "bob", "cy"}
        )
        for listener in observers:
            await listener.wait_members(room, {"ann", "bob", "cy", "hal"})
        await trio.to_thread.run_sync(phoenix.process.kill)
        killed_at = trio.current_time()
        await hal.wait_for(lambda: hal.closed, "the drop")
        await trio.to_thread.run_sync(cluster.restart, phoenix)
        back_at = trio.current_time()
        for listener in observers:
            await listener.wait_members(room, {"ann", "bob", "cy"}, timeout=BOUND)
        latencies = {
            listener.node.id: round(listener.arrival(room, "presence.leave", "hal") - killed_at, 2)
            for listener in observers
        }
        print(
            f"\npresence leave after kill -9 and an immediate restart: {latencies} s after the "
            f"kill; the restarted node was listening {back_at - killed_at:.2f} s after the kill"
        )
        # Sooner than the timeout would have allowed: the new epoch settled it.
        assert max(latencies.values()) < PRESENCE_TIMEOUT, latencies
        again = await stack.enter_async_context(
            listening(nursery, phoenix, "hal", info=info("hal"))
        )
        subscribed = await again.subscribe(room)
        assert {m["user_id"] for m in subscribed["data"]["members"]} == {"ann", "bob", "cy", "hal"}
        for listener in observers:
            await listener.wait_members(room, {"ann", "bob", "cy", "hal"})
        assert_clean(observers, room)
    code = await trio.to_thread.run_sync(phoenix.process.stop)
    assert code == 0, phoenix.process.output()


async def test_a_node_started_late_knows_the_members_at_once(
    cluster: Cluster, trio_nodes: list[Node]
) -> None:
    room = f"presence-chat.{secrets.token_hex(3)}"
    a, b, c = trio_nodes
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        observers = await join_all(nursery, stack, room, [(a, "ann"), (b, "bob"), (c, "cy")])
        late = await trio.to_thread.run_sync(cluster.start, "late")
        try:
            fay = await stack.enter_async_context(listening(nursery, late, "fay", info=info("fay")))
            subscribed = await fay.subscribe(room)
            members = sorted(subscribed["data"]["members"], key=lambda m: m["user_id"])
            assert members == [
                {"user_id": user, "user_info": info(user)} for user in ("ann", "bob", "cy", "fay")
            ], members
            for listener in observers:
                await listener.wait_members(room, {"ann", "bob", "cy", "fay"})
            await fay.client.ws.aclose()
            for listener in observers:
                await listener.wait_members(room, {"ann", "bob", "cy"})
            assert_clean(observers, room)
        finally:
            code = await trio.to_thread.run_sync(late.process.stop)
        assert code == 0, late.process.output()


async def test_members_of_a_node_that_stalled_come_back_with_it(
    cluster: Cluster, trio_nodes: list[Node]
) -> None:
    """A node silent past the timeout (a long pause, a broker hiccup) is presumed dead and its
    members leave; when it speaks again, its members - still connected - must be back."""
    room = f"presence-chat.{secrets.token_hex(3)}"
    a, b, c = trio_nodes
    stalling = await trio.to_thread.run_sync(cluster.start, "stalling")
    async with trio.open_nursery() as nursery, AsyncExitStack() as stack:
        observers = await join_all(nursery, stack, room, [(a, "ann"), (b, "bob"), (c, "cy")])
        (gus,) = await join_all(
            nursery, stack, room, [(stalling, "gus")], present={"ann", "bob", "cy"}
        )
        everyone = {"ann", "bob", "cy", "gus"}
        for listener in observers:
            await listener.wait_members(room, everyone)
        stalling.process.signal(signal.SIGSTOP)
        try:
            for listener in observers:
                await listener.wait_members(room, {"ann", "bob", "cy"}, timeout=BOUND)
        finally:
            stalling.process.signal(signal.SIGCONT)
        # Gus never left: once his node is heard from again he is a member everywhere (and
        # the others are members on his node).
        for node in [*trio_nodes, stalling]:
            await wait_health(
                node,
                lambda report, node=node: (
                    {n.id for n in [*trio_nodes, stalling]} - {node.id} <= set(report["cluster"])
                ),
                "listing every node again",
                timeout=BOUND,
            )
        views = {}

        async def settle(listener: Listener) -> None:
            with suppress(AssertionError):
                await listener.wait_members(room, everyone, timeout=BOUND)
            views[listener.name] = sorted(listener.presence(room)[0])

        async with trio.open_nursery() as waiting:
            for listener in [*observers, gus]:
                waiting.start_soon(settle, listener)
        assert all(view == sorted(everyone) for view in views.values()), (
            f"member lists after the stalled node came back: {views}"
        )
        fresh = await stack.enter_async_context(listening(nursery, b, "cy", info=info("cy")))
        subscribed = await fresh.subscribe(room)
        assert {m["user_id"] for m in subscribed["data"]["members"]} == everyone, subscribed
        assert gus.closed is None
    code = await trio.to_thread.run_sync(stalling.process.stop)
    assert code == 0, stalling.process.output()
