"""The thread bridge of the Kafka adapters: a worker thread's items reach trio in order, a full
handover holds the worker back, closing it releases the worker, and reconnections back off.

No broker is needed: the bridge is the part of the adapters that is only threads and trio.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

import pytest
import trio

from tidings.adapters.kafka.bridge import FIRST_DELAY, Handover, reconnecting

WAIT = 10.0


async def test_items_arrive_in_order_and_the_stream_ends_when_the_worker_finishes() -> None:
    handover = Handover[int](2)

    def work() -> None:
        for item in range(100):
            assert handover.put(item)
        handover.finish()

    worker = threading.Thread(target=work)
    worker.start()
    received = [item async for item in handover.items()]
    await trio.to_thread.run_sync(worker.join)
    assert received == list(range(100))


async def test_a_full_handover_holds_the_worker_until_trio_reads() -> None:
    handover = Handover[int](2)
    two_put, three_put = threading.Event(), threading.Event()

    def work_and_signal() -> None:
        handover.put(0)
        handover.put(1)
        two_put.set()
        handover.put(2)
        three_put.set()

    worker = threading.Thread(target=work_and_signal, daemon=True)
    worker.start()
    assert await trio.to_thread.run_sync(two_put.wait, WAIT)
    # Two are queued and none read: the third waits, however long trio takes.
    assert not await trio.to_thread.run_sync(three_put.wait, 0.3)
    items = handover.items()
    assert await items.__anext__() == 0
    assert await trio.to_thread.run_sync(three_put.wait, WAIT)
    await handover.aclose()
    await trio.to_thread.run_sync(worker.join)


async def test_closing_releases_a_waiting_worker_and_later_puts_fail() -> None:
    handover = Handover[int](1)
    results: list[bool] = []
    first = threading.Event()

    def work() -> None:
        results.append(handover.put(1))
        first.set()
        results.append(handover.put(2))  # waits: nobody reads

    worker = threading.Thread(target=work, daemon=True)
    worker.start()
    assert await trio.to_thread.run_sync(first.wait, WAIT)
    await handover.aclose()
    await trio.to_thread.run_sync(worker.join, WAIT)
    assert not worker.is_alive()
    assert results == [True, False]
    assert handover.put(3) is False


class Waits(threading.Event):
    """A stop event that records each wait asked of it and returns at once (not stopped)."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[float | None] = []

    def wait(self, timeout: float | None = None) -> bool:
        self.asked.append(timeout)
        return self.is_set()


def _run_reconnecting(
    session: Callable[[Callable[[], None]], None], stop: threading.Event
) -> list[BaseException]:
    errors: list[BaseException] = []
    reconnecting(
        session,
        stop=stop,
        errors=(OSError,),
        log=logging.getLogger("tests.bridge"),
        what="test session",
        longest=FIRST_DELAY * 4,
        on_error=errors.append,
    )
    return errors


def test_reconnecting_backs_off_doubling_to_the_cap_and_ends_when_the_session_returns() -> None:
    stop = Waits()
    sessions = 0

    def session(connected: Callable[[], None]) -> None:
        nonlocal sessions
        sessions += 1
        if sessions < 6:
            raise OSError(f"outage {sessions}")

    errors = _run_reconnecting(session, stop)
    assert [str(error) for error in errors] == [f"outage {n}" for n in range(1, 6)]
    cap = FIRST_DELAY * 4
    assert stop.asked == [FIRST_DELAY, FIRST_DELAY * 2, cap, cap, cap]


def test_a_session_that_connected_resets_the_delay_and_stop_ends_the_loop() -> None:
    stop = Waits()
    sessions = 0

    def session(connected: Callable[[], None]) -> None:
        nonlocal sessions
        sessions += 1
        if sessions == 3:
            connected()
        if sessions == 4:
            stop.set()
        raise OSError("outage")

    errors = _run_reconnecting(session, stop)
    assert len(errors) == 4
    # 0.5, 1, then 0.5 again (the third session had connected), then 1, which sees the stop.
    assert stop.asked == [FIRST_DELAY, FIRST_DELAY * 2, FIRST_DELAY, FIRST_DELAY * 2]


def test_an_unexpected_error_is_a_bug_and_propagates() -> None:
    def session(connected: Callable[[], None]) -> None:
        raise KeyError("bug")

    with pytest.raises(KeyError):
        _run_reconnecting(session, threading.Event())
