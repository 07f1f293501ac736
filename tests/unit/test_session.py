"""A session and its outbox: a full queue is a value the session acts on; nothing outlives a cut."""

from __future__ import annotations

import gc
from collections.abc import Sequence

from tidings.application.gateway import Limits, Outbox, Session
from tidings.domain import Identity
from tidings.domain.protocol import CloseCode
from tidings.ports import SendOutcome


class Blocked:
    """A connection whose socket never takes a byte without waiting."""

    remote = "test"

    def send_nowait(self, frames: Sequence[str]) -> SendOutcome:
        return SendOutcome.BLOCKED


def _spawned(task: object) -> None:
    """The writer task is not run here: the queue only fills."""


def test_a_full_outbox_says_so_and_queues_nothing() -> None:
    outbox = Outbox(Blocked(), 2, _spawned, lambda reason: None)  # type: ignore[arg-type]
    assert outbox.offer("a") and outbox.offer("b")
    assert not outbox.offer("c")
    assert len(outbox) == 2


def test_a_session_whose_outbox_fills_is_cut_as_a_slow_consumer() -> None:
    session = Session(Blocked(), Identity(), Limits(queue_size=2), "node", _spawned)  # type: ignore[arg-type]
    assert session.offer("a") and session.offer("b")
    assert not session.offer("c")
    assert session.closing is not None and session.closing[0] == CloseCode.SLOW_CONSUMER


def test_a_cut_session_leaves_no_reference_cycle_behind() -> None:
    """Thousands of connections come and go; a cycle between a session and its outbox would
    keep each one until a full collection, which the gateway makes rare (ADR 0015)."""
    gc.collect()
    gc.disable()
    try:
        session = Session(Blocked(), Identity(), Limits(), "node", _spawned)  # type: ignore[arg-type]
        session.offer("frame")
        session.cut(CloseCode.NORMAL, "done")
        del session
        assert gc.collect() == 0
    finally:
        gc.enable()
