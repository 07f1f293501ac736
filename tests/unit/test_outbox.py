"""The durable outbox: stored first, relayed in order, retried through outages, never lost."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from tidings import BrokerUnavailable, Channel, Message, Position
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
