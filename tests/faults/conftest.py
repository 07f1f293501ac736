"""A disposable second Kafka broker (on free ports of its own) that fault tests stop, kill and
restart."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from ..support.kafka import KafkaNode


@pytest.fixture(scope="module")
def kafka_node() -> Iterator[KafkaNode]:
    node = KafkaNode()
    try:
        node.start()
        yield node
    finally:
        node.wipe()


@pytest.fixture
def node_env(kafka_node: KafkaNode) -> dict[str, str]:
    kafka_node.start()  # idempotent: a test that failed midway may have left it stopped
    run = secrets.token_hex(4)
    return {
        "REALTIME_BROKER": "kafka",
        "KAFKA_BROKERS": kafka_node.bootstrap,
        "KAFKA_TOPIC_PREFIX": f"f{run}",
        "KAFKA_CONSUMER_GROUP": f"fg{run}",
        "KAFKA_TIMEOUT": "3",
    }
