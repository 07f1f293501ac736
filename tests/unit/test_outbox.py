"""The durable outbox: stored first, relayed in order, retried through outages, never lost."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tidings import BrokerUnavailable, Channel, ConfigurationError, Message, Position
from tidings.adapters.outbox import OutboxPublisher, SqliteOutbox
from tidings.application.acknowledgement import Acknowledgement


class FlakyBroker:
    """A publisher that is down until ``up`` is set, and records what it took."""

    name = "kafka"

    def __init__(self) -> None:
        self.up = threading.Event()
        self.taken: list[Message] = []
        self.closed = False

    def publish(self, channel: Channel | str, message: Message) -> Acknowledgement:
        if self.up.is_set():
            self.taken.append(message)
            at = Position("0123456789ab", len(self.taken) - 1)
            return Acknowledgement.acknowledged(message, at)
        return Acknowledgement.failed(message, BrokerUnavailable(["k:9092"], "down"))

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self) -> None:
        self.closed = True


def _messages(count: int) -> list[Message]:
    return [Message.event(f"chat.{i % 3}", "e", {"seq": i}) for i in range(count)]


def test_broadcasts_are_accepted_while_the_broker_is_down_and_relayed_in_order(
    tmp_path: Path,
) -> None:
    broker = FlakyBroker()
    publisher = OutboxPublisher(SqliteOutbox(tmp_path / "o.db"), broker, retry_max=0.05)
    sent = _messages(50)
    for message in sent:
        assert publisher.publish(message.channel, message).result(1) is None
    status = publisher.status()
    assert status.pending == 50 and status.oldest_age is not None
    broker.up.set()
    publisher.flush(timeout=10)
    assert publisher.status().pending == 0
    assert [m.id for m in broker.taken] == [m.id for m in sent]
    publisher.close()
    assert broker.closed


def test_what_was_not_relayed_survives_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "o.db"
    first = OutboxPublisher(SqliteOutbox(path), FlakyBroker(), retry_max=0.05, close_timeout=0.2)
    sent = _messages(5)
    for message in sent:
        first.publish(message.channel, message)
    first.close()  # the broker never came up: everything stays stored
    broker = FlakyBroker()
    broker.up.set()
    second = OutboxPublisher(SqliteOutbox(path), broker, retry_max=0.05)
    second.flush(timeout=10)
    assert [m.id for m in broker.taken] == [m.id for m in sent]
    assert second.status().pending == 0
    second.close()


def test_failures_are_counted_and_shown(tmp_path: Path) -> None:
    publisher = OutboxPublisher(
        SqliteOutbox(tmp_path / "o.db"), FlakyBroker(), retry_max=0.05, close_timeout=0.2
    )
    message = _messages(1)[0]
    publisher.publish(message.channel, message)
    publisher.flush(timeout=0.5)
    status = publisher.status()
    assert status.pending == 1 and status.attempts >= 1
    assert status.last_error is not None and "k:9092" in status.last_error
    publisher.close()


def test_a_message_for_the_wrong_channel_is_refused(tmp_path: Path) -> None:
    publisher = OutboxPublisher(SqliteOutbox(tmp_path / "o.db"), FlakyBroker(), close_timeout=0.2)
    with pytest.raises(ValueError, match=r"chat\.9"):
        publisher.publish("chat.1", Message.event("chat.9", "e"))
    publisher.close()


def test_the_outbox_command_reports_status(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from tidings.entrypoints.cli import cli

    store = SqliteOutbox(tmp_path / "o.db")
    store.add(_messages(1)[0])
    store.close()
    monkeypatch.setenv("REALTIME_OUTBOX", str(tmp_path / "o.db"))
    result = CliRunner().invoke(cli, ["outbox", "status"])
    assert result.exit_code == 0, result.output
    assert "pending   1" in result.output
    monkeypatch.delenv("REALTIME_OUTBOX")
    result = CliRunner().invoke(cli, ["outbox", "status"])
    assert result.exit_code == 2 and "REALTIME_OUTBOX" in result.output


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    """Wait until ``condition()`` holds, at most ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"not within {timeout}s"
        time.sleep(0.01)


class KeyRefusingBroker(FlakyBroker):
    """Refuses with a ``ConfigurationError`` (a gateway that refuses the API key) until ``up``."""

    def publish(self, channel: Channel | str, message: Message) -> Acknowledgement:
        if self.up.is_set():
            return super().publish(channel, message)
        refusal = ConfigurationError("the gateway refused to publish (401): set REALTIME_API_KEY")
        return Acknowledgement.failed(message, refusal)


def test_a_refusal_that_is_no_broker_error_leaves_the_relay_running(tmp_path: Path) -> None:
    broker = KeyRefusingBroker()
    publisher = OutboxPublisher(SqliteOutbox(tmp_path / "o.db"), broker, retry_max=0.05)
    sent = _messages(3)
    for message in sent:
        assert publisher.publish(message.channel, message).result(1) is None
    _until(lambda: publisher.status().attempts >= 2)  # refused, and tried again
    status = publisher.status()
    assert status.pending == 3 and "REALTIME_API_KEY" in (status.last_error or "")
    broker.up.set()
    publisher.flush(timeout=10)
    assert [m.id for m in broker.taken] == [m.id for m in sent]
    publisher.close()


class LateRefusalBroker(FlakyBroker):
    """Answers each message a moment after taking it, with a refusal: the answer for one
    arrives while the next is being published (as from Kafka's or the gateway's own thread)."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._pending: list[Acknowledgement] = []

    def publish(self, channel: Channel | str, message: Message) -> Acknowledgement:
        self._refuse_pending()
        ack = Acknowledgement(message)
        with self._lock:
            self.taken.append(message)
            self._pending.append(ack)
        threading.Timer(0.02, self._refuse_pending).start()
        return ack

    def _refuse_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, []
        for ack in pending:
            ack.set_exception(BrokerUnavailable(["k:9092"], "down"))


def test_nothing_is_sent_after_a_message_the_broker_refused_later(tmp_path: Path) -> None:
    """The relay stops at a refusal even when it arrives after the publish returned, so a
    message never overtakes one accepted before it."""
    broker = LateRefusalBroker()
    publisher = OutboxPublisher(
        SqliteOutbox(tmp_path / "o.db"), broker, retry_max=0.05, close_timeout=0.2
    )
    sent = _messages(50)
    for message in sent:
        publisher.publish(message.channel, message)
    _until(lambda: publisher.status().attempts >= 2)
    publisher.close()
    assert {m.id for m in broker.taken} <= {sent[0].id, sent[1].id}
    store = SqliteOutbox(tmp_path / "o.db")
    assert store.status().pending == 50
    store.close()
