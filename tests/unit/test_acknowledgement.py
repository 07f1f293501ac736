"""Acknowledgement: a broker's answer, settled once from any thread, awaited in any style."""

from __future__ import annotations

import asyncio
import logging
import threading
import time

import pytest

from tidings import BrokerUnavailable, Message, Position
from tidings.application.acknowledgement import Acknowledgement

AT = Position("0123456789ab", 7)
MESSAGE = Message.event("chat.1", "said", {"text": "hi"})


def settle_later(ack: Acknowledgement, delay: float = 0.05) -> threading.Thread:
    """Acknowledge ``ack`` at ``AT`` from another thread after ``delay`` seconds."""
    thread = threading.Thread(target=lambda: (time.sleep(delay), ack.set_result(AT)))
    thread.start()
    return thread


def test_an_answer_already_in() -> None:
    ack = Acknowledgement.acknowledged(MESSAGE, AT)
    seen: list[Acknowledgement] = []
    ack.add_done_callback(seen.append)
    assert ack.done() and ack.result(timeout=0) == AT and ack.exception() is None
    assert seen == [ack], "a callback on a settled answer runs at once"
    assert repr(ack) == "<Acknowledgement of chat.1/said acknowledged>"


def test_a_refusal_already_in_raises_the_brokers_error() -> None:
    error = BrokerUnavailable(["k:9092"], "down")
    ack = Acknowledgement.failed(MESSAGE, error)
    assert ack.done() and ack.exception() is error
    with pytest.raises(BrokerUnavailable, match="down"):
        ack.result()
    assert repr(ack) == "<Acknowledgement of chat.1/said failed>"


def test_waiting_times_out_while_pending() -> None:
    ack = Acknowledgement(MESSAGE)
    assert not ack.done() and repr(ack) == "<Acknowledgement of chat.1/said pending>"
    with pytest.raises(TimeoutError, match=r"0\.05s"):
        ack.result(timeout=0.05)
    with pytest.raises(TimeoutError):
        ack.exception(timeout=0)
    ack.set_result(AT)  # a late answer after a timed-out wait is still taken
    assert ack.result(timeout=0) == AT


def test_a_waiter_wakes_when_another_thread_settles() -> None:
    ack = Acknowledgement(MESSAGE)
    thread = settle_later(ack)
    assert ack.result(timeout=10) == AT
    thread.join()


def test_callbacks_run_once_each_on_the_settling_thread() -> None:
    ack = Acknowledgement(MESSAGE)
    ran: list[tuple[str, str]] = []
    ack.add_done_callback(lambda _: ran.append(("first", threading.current_thread().name)))
    ack.add_done_callback(lambda _: ran.append(("second", threading.current_thread().name)))
    thread = threading.Thread(target=ack.set_result, args=(AT,), name="settler")
    thread.start()
    thread.join()
    assert ran == [("first", "settler"), ("second", "settler")]


def test_a_failing_callback_is_logged_and_the_others_still_run(
    caplog: pytest.LogCaptureFixture,
) -> None:
    ack = Acknowledgement(MESSAGE)
    ran: list[str] = []

    def broken(_: Acknowledgement) -> None:
        raise ValueError("boom")

    ack.add_done_callback(broken)
    ack.add_done_callback(lambda _: ran.append("after"))
    with caplog.at_level(logging.ERROR, logger="tidings.publisher"):
        ack.set_result(AT)
    assert ran == ["after"]
    assert "failed" in caplog.text and "boom" in caplog.text


def test_settling_twice_is_a_bug_and_keeps_the_first_answer() -> None:
    ack = Acknowledgement(MESSAGE)
    ack.set_result(AT)
    with pytest.raises(RuntimeError, match="settled already"):
        ack.set_exception(BrokerUnavailable(["k:9092"], "down"))
    assert ack.result() == AT


def race_callbacks_against_settlement(adders: int, each: int) -> list[int]:
    """Add ``each`` callbacks from each of ``adders`` threads while this one settles; how many
    times each thread's callbacks ran."""
    ack = Acknowledgement(MESSAGE)
    counts = [0] * adders
    start = threading.Barrier(adders + 1)

    def count(index: int) -> None:
        counts[index] += 1

    def add(index: int) -> None:
        start.wait()
        for _ in range(each):
            ack.add_done_callback(lambda _: count(index))

    threads = [threading.Thread(target=add, args=(index,)) for index in range(adders)]
    for thread in threads:
        thread.start()
    start.wait()
    ack.set_result(AT)
    for thread in threads:
        thread.join()
    return counts


def test_callbacks_racing_the_settlement_each_run_exactly_once() -> None:
    """Callbacks added from many threads while another settles: none lost, none run twice."""
    for _ in range(50):
        assert race_callbacks_against_settlement(adders=8, each=20) == [20] * 8


def test_asyncio_awaits_an_answer_from_another_thread() -> None:
    async def main() -> Position | None:
        ack = Acknowledgement(MESSAGE)
        settle_later(ack)
        return await ack

    assert asyncio.run(main()) == AT


def test_asyncio_cancelled_waiter_ignores_the_late_answer() -> None:
    async def main() -> Acknowledgement:
        ack = Acknowledgement(MESSAGE)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ack, timeout=0.01)
        ack.set_result(AT)  # wakes a cancelled waiter: nothing must fail in the loop
        await asyncio.sleep(0.01)
        return ack

    assert asyncio.run(main()).result() == AT


async def test_trio_awaits_an_answer_from_another_thread() -> None:
    ack = Acknowledgement(MESSAGE)
    settle_later(ack)
    assert await ack == AT


async def test_trio_awaits_a_refusal_from_another_thread() -> None:
    ack = Acknowledgement(MESSAGE)
    error = BrokerUnavailable(["k:9092"], "down")
    thread = threading.Thread(target=lambda: (time.sleep(0.05), ack.set_exception(error)))
    thread.start()
    with pytest.raises(BrokerUnavailable, match="down"):
        await ack
    thread.join()
