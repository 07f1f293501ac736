"""A forked child's publishers do not depend on threads of the parent (src/adapters/forks.py).

The tests of what reaches a client from a forked app are tests/adapters/test_fork_safety.py; this
one forces the case those can only hit by chance: a thread of the parent holds the publisher's
lock, and the lock that settles every acknowledgement, at the moment of ``fork()``. The child
has no such thread; with the inherited locks it would wait for ever.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from tidings import Message
from tidings.adapters.http_publisher import GatewayPublisher
from tidings.adapters.memory.broker import MemoryBroker
from tidings.adapters.outbox import OutboxPublisher, SqliteOutbox
from tidings.application import acknowledgement

CHILD_WAIT = 10.0


def _answer(request: httpx.Request) -> httpx.Response:
    """A gateway's answer to POST /broadcast: each message's id, with no position."""
    return httpx.Response(200, json=[{"id": m["id"]} for m in json.loads(request.content)])


def _exit_code_within(pid: int, seconds: float) -> int | None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.02)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return None


def _fork_while_held(*locks: threading.Lock, child: Callable[[], None]) -> int | None:
    """Fork while another thread holds ``locks``; the child runs ``child()`` (exit 0 if it
    returns, 1 if it raises); its exit code, or None if it did not end in time."""
    held, release = threading.Event(), threading.Event()

    def hold() -> None:
        for lock in locks:
            lock.acquire()
        held.set()
        release.wait()
        for lock in reversed(locks):
            lock.release()

    holder = threading.Thread(target=hold)
    holder.start()
    assert held.wait(5)
    pid = os.fork()
    if pid == 0:  # the child: report by exit code only, never return into pytest
        try:
            child()
        except BaseException:
            os._exit(1)
        os._exit(0)
    release.set()
    holder.join()
    return _exit_code_within(pid, CHILD_WAIT + 10)


def test_the_gateway_publisher_publishes_in_a_child_forked_while_its_locks_were_held() -> None:
    publisher = GatewayPublisher(
        "http://gateway.test", "key", transport=httpx.MockTransport(_answer)
    )
    try:
        publisher.publish("user.1", Message.event("user.1", "before")).result(5)

        def child() -> None:
            publisher.publish("user.1", Message.event("user.1", "in-child")).result(CHILD_WAIT)

        code = _fork_while_held(publisher._lock, acknowledgement._settling, child=child)
        assert code == 0
        # The parent's publisher is untouched by the child's renewal.
        publisher.publish("user.1", Message.event("user.1", "after")).result(5)
    finally:
        publisher.close()


def test_the_memory_broker_publishes_in_a_child_forked_while_its_lock_was_held() -> None:
    broker = MemoryBroker()

    def child() -> None:
        ack = broker.publish("user.1", Message.event("user.1", "in-child"))
        assert ack.result(CHILD_WAIT) is not None

    assert _fork_while_held(broker._lock, child=child) == 0


def test_an_outbox_shared_with_a_child_forked_while_its_lock_was_held(tmp_path: Path) -> None:
    """The child stores into the parent's outbox file; the parent, which holds the relay lock,
    relays it; the child sees the file emptied. The child's relay must use the child's own
    connection and lock, renewed before the relay restarts, never the held ones."""
    sent: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        messages = json.loads(request.content)
        sent.extend(m["event"] for m in messages)
        return httpx.Response(200, json=[{"id": m["id"]} for m in messages])

    store = SqliteOutbox(tmp_path / "outbox.db")
    gateway = GatewayPublisher("http://gateway.test", "key", transport=httpx.MockTransport(answer))
    outbox = OutboxPublisher(store, gateway)
    try:
        outbox.publish("user.1", Message.event("user.1", "before"))
        outbox.flush(5)

        def child() -> None:
            outbox.publish("user.1", Message.event("user.1", "in-child")).result(CHILD_WAIT)
            outbox.flush(CHILD_WAIT)
            assert store.status().pending == 0

        assert _fork_while_held(store._lock, child=child) == 0
        assert sent == ["before", "in-child"]  # relayed once, by the parent
    finally:
        outbox.close()
