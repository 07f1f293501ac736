"""The flush pass (ADR 0038): a fan-out marks outboxes pending, one task writes each once.

Driven without sockets: each connection records what it is sent and when, so the tests observe
what went out, in which writes, and before what. The triggers are deterministic: a dispatch is
synchronous, and ``wait_all_tasks_blocked`` says when the flush pass has nothing left to do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence

import pytest
import trio
import trio.testing

from tidings.application.gateway import Limits, Session
from tidings.application.gateway import hub as hub_module
from tidings.application.gateway.hub import Hub
from tidings.application.gateway.presence import PresenceTracker
from tidings.application.gateway.session import Subscription
from tidings.domain import Channel, Identity, Message, Position
from tidings.domain.protocol import CloseCode
from tidings.ports import ConnectionClosed, Delivered, SendOutcome

CHANNEL = Channel("news")


class Recording:
    """A connection that takes every write at once and keeps each write's frames."""

    remote = "test"

    def __init__(self, log: list[str] | None = None, name: str = "") -> None:
        self.writes: list[list[str]] = []
        self.closed = False
        self._log = log
        self._name = name

    def send_nowait(self, frames: Sequence[str]) -> SendOutcome:
        assert not self.closed, "written after close"
        self.writes.append(list(frames))
        if self._log is not None:
            self._log.append(self._name)
        return SendOutcome.SENT

    async def send_many(self, frames: Sequence[str]) -> None:
        assert not self.closed, "written after close"
        if frames:
            self.writes.append(list(frames))

    @property
    def frames(self) -> list[str]:
        return [frame for write in self.writes for frame in write]


class Stuck(Recording):
    """A client that stopped reading: nothing goes out without waiting, and waiting never ends."""

    def __init__(self) -> None:
        super().__init__()
        self.waiting = 0

    def send_nowait(self, frames: Sequence[str]) -> SendOutcome:
        return SendOutcome.BLOCKED

    async def send_many(self, frames: Sequence[str]) -> None:
        self.waiting += 1
        await trio.sleep_forever()


class Breaking(Recording):
    """A connection that breaks when written: raises at once, or fails in its writer."""

    def __init__(self, *, at_once: bool) -> None:
        super().__init__()
        self.at_once = at_once

    def send_nowait(self, frames: Sequence[str]) -> SendOutcome:
        if self.at_once:
            raise RuntimeError("the socket broke in an unforeseen way")
        return SendOutcome.BLOCKED

    async def send_many(self, frames: Sequence[str]) -> None:
        raise ConnectionClosed(1006, "connection lost")


def _hub() -> Hub:
    return Hub(PresenceTracker("node", lambda channel, part: None))


def _session(
    hub: Hub,
    connection: object,
    spawn: Callable[[Callable[[], Awaitable[None]]], None],
    queue_size: int = 1000,
) -> Session:
    session = Session(connection, Identity(), Limits(queue_size=queue_size), "node", spawn)  # type: ignore[arg-type]
    hub.add(session)
    hub.subscribe(session, Subscription(CHANNEL))
    return session


def _batch(first: int, count: int) -> list[Delivered]:
    return [
        Delivered(Message.event(CHANNEL, "e", {"n": n}), Position("s", n))
        for n in range(first, first + count)
    ]


def _numbers(frames: list[str]) -> list[int]:
    import json

    return [json.loads(frame)["data"]["n"] for frame in frames]


async def test_frames_that_pile_up_before_the_pass_share_one_write_in_order() -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.flusher.run)
        await trio.testing.wait_all_tasks_blocked()
        connections = [Recording() for _ in range(3)]
        for connection in connections:
            _session(hub, connection, nursery.start_soon)
        for n in range(5):  # five dispatches before the flush pass gets to run
            assert hub.dispatch(_batch(n, 1)) == 3
        assert all(not connection.writes for connection in connections)
        await trio.testing.wait_all_tasks_blocked()
        for connection in connections:
            assert connection.writes == [connection.frames], "one write for the five"
            assert _numbers(connection.frames) == [0, 1, 2, 3, 4]
        assert hub.dispatch(_batch(4, 3)) == 3 * 2, "what a session has is not sent again"
        await trio.testing.wait_all_tasks_blocked()
        for connection in connections:
            assert _numbers(connection.frames) == [0, 1, 2, 3, 4, 5, 6]
        nursery.cancel_scope.cancel()


async def test_a_stuck_client_does_not_hold_back_another_clients_first_byte() -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.flusher.run)
        await trio.testing.wait_all_tasks_blocked()
        stuck, fast = Stuck(), Recording()
        stuck_session = _session(hub, stuck, nursery.start_soon, queue_size=4)
        _session(hub, fast, nursery.start_soon)
        hub.dispatch(_batch(0, 1))
        await trio.testing.wait_all_tasks_blocked()
        assert _numbers(fast.frames) == [0]
        assert stuck.waiting == 1 and not stuck.frames, "the stuck one's write still waits"
        for n in range(1, 10):  # the stuck one's queue overflows: it alone is cut (4008)
            hub.dispatch(_batch(n, 1))
            await trio.testing.wait_all_tasks_blocked()
        assert stuck_session.closing is not None
        assert stuck_session.closing[0] == CloseCode.SLOW_CONSUMER
        assert _numbers(fast.frames) == list(range(10))
        nursery.cancel_scope.cancel()


async def test_a_big_dispatch_writes_before_it_has_handed_over_everything(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "FLUSH_EVERY", 10)
    monkeypatch.setattr(hub_module, "FRAMES_PER_WRITE", 2)  # 2 sessions: every 10 hand-offs
    hub = _hub()
    order: list[str] = []
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.flusher.run)
        await trio.testing.wait_all_tasks_blocked()
        first, second = Recording(order, "first"), Recording(order, "second")
        _session(hub, first, nursery.start_soon)
        _session(hub, second, nursery.start_soon)
        assert hub.dispatch(_batch(0, 22)) == 44
        # The dispatch has returned and the flush pass has not run: what went out already was
        # written by the dispatch itself, every 10 hand-offs (5 messages to both).
        for connection in (first, second):
            assert [_numbers(write) for write in connection.writes] == [
                list(range(start, start + 5)) for start in range(0, 20, 5)
            ]
        await trio.testing.wait_all_tasks_blocked()
        assert _numbers(first.frames) == _numbers(second.frames) == list(range(22))
        assert sorted(order[:2]) == ["first", "second"], "each written at the first bound"
        nursery.cancel_scope.cancel()


async def test_a_session_cut_before_its_turn_is_never_written() -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.flusher.run)
        await trio.testing.wait_all_tasks_blocked()
        gone, other = Recording(), Recording()
        gone_session = _session(hub, gone, nursery.start_soon)
        _session(hub, other, nursery.start_soon)
        hub.dispatch(_batch(0, 1))
        gone_session.cut(1006, "client left")
        gone.closed = True  # a write from here on fails the test (see Recording)
        await trio.testing.wait_all_tasks_blocked()
        assert not gone.writes
        assert _numbers(other.frames) == [0]
        nursery.cancel_scope.cancel()


async def test_a_big_dispatch_to_many_recipients_keeps_many_frames_per_write(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(hub_module, "FLUSH_EVERY", 10)
    monkeypatch.setattr(hub_module, "FRAMES_PER_WRITE", 4)
    hub = _hub()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.flusher.run)
        await trio.testing.wait_all_tasks_blocked()
        connections = [Recording() for _ in range(5)]
        for connection in connections:
            _session(hub, connection, nursery.start_soon)
        assert hub.dispatch(_batch(0, 10)) == 50
        for connection in connections:  # written at 20 hand-offs per 5 outboxes: 4 frames
            assert [_numbers(write) for write in connection.writes] == [[0, 1, 2, 3], [4, 5, 6, 7]]
        await trio.testing.wait_all_tasks_blocked()
        for connection in connections:
            assert _numbers(connection.frames) == list(range(10))
        nursery.cancel_scope.cancel()


@pytest.mark.parametrize("at_once", [True, False], ids=["raises", "fails-in-writer"])
async def test_the_flush_pass_survives_a_connection_that_breaks_mid_pass(at_once: bool) -> None:
    hub = _hub()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.flusher.run)
        await trio.testing.wait_all_tasks_blocked()
        before, after = Recording(), Recording()
        _session(hub, before, nursery.start_soon)
        broken = _session(hub, Breaking(at_once=at_once), nursery.start_soon)
        _session(hub, after, nursery.start_soon)
        hub.dispatch(_batch(0, 1))
        await trio.testing.wait_all_tasks_blocked()
        hub.dispatch(_batch(1, 1))
        await trio.testing.wait_all_tasks_blocked()
        assert _numbers(before.frames) == _numbers(after.frames) == [0, 1]
        if not at_once:
            assert broken.closing is not None and broken.closing[0] == 1006
        assert hub.flusher.passes == 2
        nursery.cancel_scope.cancel()


async def test_without_a_flush_task_a_dispatch_writes_at_once() -> None:
    hub = _hub()
    connection = Recording()
    _session(hub, connection, lambda task: None)
    hub.dispatch(_batch(0, 2))
    assert connection.writes == [connection.frames] and _numbers(connection.frames) == [0, 1]


async def test_what_is_pending_when_the_flush_task_stops_is_written() -> None:
    hub = _hub()
    connection = Recording()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(hub.flusher.run)
        await trio.testing.wait_all_tasks_blocked()
        _session(hub, connection, nursery.start_soon)
        hub.dispatch(_batch(0, 1))
        nursery.cancel_scope.cancel()
    assert _numbers(connection.frames) == [0]
