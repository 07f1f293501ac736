"""``tidings config --check`` and the command's Kafka logging against the real broker.

The unit tests (``tests/unit/test_cli_failures.py``, ``tests/unit/test_kafka_log.py``) see only a
Kafka that never answers; here one answers: its check passes, a closed port beside it fails on
its own line, and kafka-python's record of a connection made is one ``KafkaLog`` recognises.
"""

from __future__ import annotations

import logging
import re

import pytest

from tidings.bootstrap import Container
from tidings.entrypoints.logs import KafkaLog, name_brokers, setup_logging

from .helpers import Cli, load_settings

pytestmark = pytest.mark.kafka


def test_config_check_says_the_broker_answered(cli: Cli, kafka_env: dict[str, str]) -> None:
    run = cli.run(["config", "--check"], kafka_env, timeout=60)
    assert run.code == 0, run.describe()
    broker = kafka_env["KAFKA_BROKERS"]
    answered = [line for line in run.stdout if line.startswith(f"ok    Kafka at {broker}: ")]
    assert len(answered) == 1, run.describe()
    assert re.search(r"answered in \d+\.\d\ds \(cluster \S+\)$", answered[0]), answered[0]
    assert all(line.startswith("ok") for line in run.stdout), run.describe()
    assert run.stderr == [], run.describe()


def test_config_check_tells_each_broker_apart(
    cli: Cli, kafka_env: dict[str, str], closed_port: int
) -> None:
    good = kafka_env["KAFKA_BROKERS"]
    bad = f"127.0.0.1:{closed_port}"
    env = {**kafka_env, "KAFKA_BROKERS": f"{good},{bad}", "KAFKA_TIMEOUT": "2"}
    run = cli.run(["config", "--check"], env, timeout=60)
    assert run.code == 1, run.describe()
    kafka_lines = [line for line in run.stdout if " Kafka at " in line]
    assert len(kafka_lines) == 2, run.describe()
    assert kafka_lines[0].startswith(f"ok    Kafka at {good}: answered in "), kafka_lines
    assert kafka_lines[1].startswith(f"FAIL  Kafka at {bad}: no answer within 2s: "), kafka_lines
    assert run.stderr == ["tidings: 1 check(s) failed; see the FAIL line(s) above"], run.describe()


@pytest.mark.usefixtures("command_logging")
def test_kafka_log_recognises_kafka_pythons_connection_made(kafka_env: dict[str, str]) -> None:
    """The texts ``KafkaLog`` matches are kafka-python's: a real connection flips it to
    reachable, which is what makes a later connection error an outage worth a line."""
    setup_logging("INFO")
    settings = load_settings(kafka_env)
    name_brokers(settings.broker_list)
    handlers = [each for each in logging.getLogger("kafka").handlers if isinstance(each, KafkaLog)]
    assert len(handlers) == 1
    assert handlers[0].reachable is None
    container = Container.for_settings(settings)
    try:
        assert container.kafka_admin().cluster_id()
    finally:
        container.shutdown_resources()
    assert handlers[0].reachable is True
