"""``REALTIME_LOG_FORMAT``: text for people, json (one object per line) for a log collector; the
Kafka filter works the same in both; a bad value exits 2 naming the variable."""

from __future__ import annotations

import json
import logging
import sys

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from tidings.entrypoints.cli import cli
from tidings.entrypoints.logs import (
    JsonFormatter,
    formatter_for,
    name_brokers,
    setup_logging,
    use_log_format,
)

REFUSED = ConnectionRefusedError(111, "Connection refused")


def _record(message: str, **extra: object) -> logging.LogRecord:
    record = logging.LogRecord("tidings.gateway", logging.INFO, __file__, 1, "%s", (message,), None)
    record.__dict__.update(extra)
    return record


def test_a_json_line_has_time_level_logger_message_and_the_context_given() -> None:
    record = _record("connection abc closed", connection="abc", node="n-1", code=4008)
    entry = json.loads(JsonFormatter().format(record))
    assert entry.pop("time").endswith("Z")
    assert entry == {
        "level": "INFO",
        "logger": "tidings.gateway",
        "message": "connection abc closed",
        "connection": "abc",
        "node": "n-1",
        "code": 4008,
    }


def test_a_json_line_carries_the_traceback_of_an_exception() -> None:
    try:
        raise ValueError("boom")
    except ValueError:
        record = logging.LogRecord(
            "tidings.web", logging.ERROR, __file__, 1, "failed", (), sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "failed"
    assert "ValueError: boom" in entry["exception"]


@given(st.text(), st.one_of(st.none(), st.text()))
def test_any_message_is_one_line_that_decodes_back(message: str, channel: str | None) -> None:
    line = JsonFormatter().format(_record(message, channel=channel))
    assert len(line.splitlines()) == 1
    entry = json.loads(line)
    assert entry["message"] == message
    assert entry.get("channel") == channel


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="xml"):
        formatter_for("xml")


@pytest.mark.usefixtures("command_logging")
def test_the_kafka_filter_works_in_json(capsys: pytest.CaptureFixture[str]) -> None:
    setup_logging("INFO")
    use_log_format("json")
    try:
        name_brokers(["127.0.0.1:9"])
        logging.getLogger("kafka.net.connection").info("%s: Connected", "<KafkaConnection>")
        for _ in range(30):
            logging.getLogger("kafka.net.manager").error("Connection failed: %s", REFUSED)
            logging.getLogger("kafka.cluster").warning("No node available for metadata refresh")
    finally:
        use_log_format("text")
    written = capsys.readouterr().err.splitlines()
    assert len(written) == 1, written
    entry = json.loads(written[0])
    assert entry["level"] == "WARNING"
    assert entry["logger"] == "kafka"
    assert entry["message"] == "Kafka at 127.0.0.1:9 unreachable: [Errno 111] Connection refused"


def test_config_shows_the_log_format(runner: CliRunner, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REALTIME_LOG_FORMAT", "json")
    try:
        result = runner.invoke(cli, ["config", "--json"])
    finally:
        use_log_format("text")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["REALTIME_LOG_FORMAT"] == "json"


def test_a_bad_log_format_exits_2_naming_the_variable(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_LOG_FORMAT", "xml")
    result = runner.invoke(cli, ["config"])
    assert result.exit_code == 2, result.output
    assert "REALTIME_LOG_FORMAT" in result.output
    assert "xml" in result.output


def test_a_command_failure_is_a_json_line_too(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_LOG_FORMAT", "json")
    try:
        result = runner.invoke(cli, ["publish", "public.x", "e", "--url", "http://127.0.0.1:9"])
    finally:
        use_log_format("text")
    assert result.exit_code == 1
    entry = json.loads(result.output.strip().splitlines()[-1])
    assert entry["level"] == "ERROR"
    assert entry["message"].startswith("tidings: no broker reachable at http://127.0.0.1:9")
