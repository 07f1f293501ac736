"""The webhook queue: batches, retries with a fresh time, a bound that drops the oldest, and
the rule of which node reports what (ADR 0037). Fakes for the HTTP side and the clock."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import trio
import trio.testing

from tidings.application.gateway.channel_events import ChannelEvents
from tidings.application.gateway.occupancy import Occupancy
from tidings.application.gateway.webhooks import WebhookQueue
from tidings.domain import Channel, ConnectionRef, Message, Presence
from tidings.domain.presence import PresenceRecord
from tidings.domain.pusher import webhooks as hooks
from tidings.ports import WebhookFailed


class Receiver:
    """A ``WebhookTransport`` that refuses while ``down`` and keeps what it took."""

    def __init__(self) -> None:
        self.down = False
        self.taken: list[dict[str, Any]] = []
        self.attempts = 0
        self.closed = False
        self.arrived = trio.Event()

    async def post(self, body: bytes, headers: Mapping[str, str]) -> None:
        self.attempts += 1
        assert headers["X-Pusher-Signature"] == hooks.signature("secret", body)
        assert headers["X-Pusher-Key"] == "key"
        if self.down:
            raise WebhookFailed("down")
        self.taken.append(json.loads(body))
        self.arrived.set()

    async def aclose(self) -> None:
        self.closed = True


def queue(receiver: Receiver, **options: Any) -> WebhookQueue:
    return WebhookQueue(receiver, key="key", secret="secret", rand=lambda: 0.0, **options)


async def test_events_go_out_in_batches_in_order() -> None:
    receiver = Receiver()
    webhooks = queue(receiver, batch_size=2)
    for n in range(5):
        webhooks.emit(hooks.channel_occupied(f"c{n}"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(webhooks.run)
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    batches = [[event["channel"] for event in body["events"]] for body in receiver.taken]
    assert batches == [["c0", "c1"], ["c2", "c3"], ["c4"]]
    assert webhooks.sent == 5 and receiver.closed


async def test_a_refused_batch_is_retried_with_a_fresh_time_until_taken(
    autojump_clock: trio.testing.MockClock,
) -> None:
    receiver = Receiver()
    receiver.down = True
    now = [1_000.0]
    webhooks = queue(receiver, clock=lambda: now[0], min_delay=1, max_delay=4)
    webhooks.emit(hooks.member_added("presence-a", "ann"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(webhooks.run)
        while receiver.attempts < 4:
            await trio.sleep(0.1)
            now[0] += 1
        receiver.down = False
        await receiver.arrived.wait()
        nursery.cancel_scope.cancel()
    [body] = receiver.taken
    assert body["events"] == [hooks.member_added("presence-a", "ann")]
    assert body["time_ms"] > 1_000_000
    assert webhooks.failures >= 4


async def test_flush_returns_once_everything_was_taken() -> None:
    receiver = Receiver()
    webhooks = queue(receiver, batch_size=1)
    await webhooks.flush()  # nothing queued: at once
    for n in range(3):
        webhooks.emit(hooks.channel_occupied(f"c{n}"))
    async with trio.open_nursery() as nursery:
        nursery.start_soon(webhooks.run)
        await webhooks.flush()
        assert len(receiver.taken) == 3 and webhooks.queued == 0
        nursery.cancel_scope.cancel()


async def test_a_full_queue_drops_the_oldest_and_counts_them(caplog: Any) -> None:
    webhooks = queue(Receiver(), max_queued=3)
    for n in range(5):
        webhooks.emit(hooks.channel_vacated(f"c{n}"))
    assert webhooks.queued == 3 and webhooks.dropped == 2
    assert "webhook queue full" in caplog.text


# -- Who reports what --------------------------------------------------------------------------


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict[str, Any]] = []

    def emit(self, event: dict[str, Any]) -> None:
        self.events.append(event)


def events_of(
    node: str, local: dict[str, int], live: list[str]
) -> tuple[ChannelEvents, Occupancy, Recorder, list[PresenceRecord]]:
    occupancy = Occupancy(lambda channel: local.get(channel, 0), lambda: list(local))
    recorder = Recorder()
    published: list[PresenceRecord] = []
    events = ChannelEvents(
        node=node,
        epoch=lambda: "e1",
        occupancy=occupancy,
        publish=published.append,
        live_nodes=lambda: live,
        webhooks=recorder,
        wall=lambda: 5.0,
    )
    return events, occupancy, recorder, published


def test_the_node_that_fills_an_empty_channel_reports_it_occupied_and_tells_its_count() -> None:
    events, _, recorder, published = events_of("a", {}, ["b"])
    events.count_changed("c", 0, 1)
    events.count_changed("c", 1, 2)
    assert recorder.events == [hooks.channel_occupied("c")]
    assert [(r.channel, r.count, r.key()) for r in published] == [
        ("c", 1, "n|a|c"),
        ("c", 2, "n|a|c"),
    ]


def test_a_channel_another_node_holds_is_neither_occupied_nor_vacated_here() -> None:
    events, occupancy, recorder, _ = events_of("a", {}, ["b"])
    occupancy.apply_remote("b", "c", 3)
    events.count_changed("c", 0, 1)
    events.count_changed("c", 1, 0)
    assert recorder.events == []
    assert occupancy.count("c") == 3


def test_only_the_smallest_live_node_reports_what_a_dead_node_took() -> None:
    change = Presence().diff(Presence().join("ann", ConnectionRef("z", "1")))
    left = Presence().join("ann", ConnectionRef("z", "1")).diff(Presence())
    assert change.joined and left.left
    for node, live, reports in (("a", ["b"], True), ("b", ["a"], False)):
        events, _, recorder, _ = events_of(node, {}, live)
        events.node_lost("z", {"presence-r": left}, ["c"])
        expected = [hooks.member_removed("presence-r", "ann"), hooks.channel_vacated("c")]
        assert recorder.events == (expected if reports else [])


def test_occupancy_sums_nodes_and_forgets_a_dead_one() -> None:
    local = {"c": 1}
    occupancy = Occupancy(lambda channel: local.get(channel, 0), lambda: list(local))
    occupancy.apply_remote("b", "c", 2)
    occupancy.apply_remote("b", "d", 1)
    assert occupancy.occupied() == {"c": 3, "d": 1}
    assert occupancy.drop_node("b") == ["d"]
    assert occupancy.occupied() == {"c": 1}
    assert not occupancy.apply_remote("b", "e", 0)


def test_a_client_event_is_reported_with_its_data_as_a_string() -> None:
    events, _, recorder, _ = events_of("a", {}, [])
    message = Message(
        channel=Channel("presence-r"), event="client-x", data={"a": 1}, exclude="9.9", user_id="u"
    )
    events.client_message(message)
    assert recorder.events == [hooks.client_event("presence-r", "client-x", '{"a":1}', "9.9", "u")]
