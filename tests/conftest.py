"""Fixtures shared by every test tier."""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from .support.kafka import ensure_kafka
from .support.processes import Gateway, process_env

SECRET = "test-secret-" + "x" * 32
API_KEY = "test-api-key"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> str:
    """The real Kafka broker (scripts/kafka starts it when it is not running)."""
    return ensure_kafka()


@pytest.fixture
def kafka_env(kafka_bootstrap: str) -> dict[str, str]:
    """Settings for an isolated run on the real broker: its own topic prefix and group."""
    run = secrets.token_hex(4)
    return {
        "REALTIME_BROKER": "kafka",
        "KAFKA_BROKERS": kafka_bootstrap,
        "KAFKA_TOPIC_PREFIX": f"t{run}",
        "KAFKA_CONSUMER_GROUP": f"g{run}",
    }


@pytest.fixture(params=["memory", "kafka"])
def broker_env(request: pytest.FixtureRequest) -> dict[str, str]:
    """Run a test once on the embedded broker and once on the real Kafka broker."""
    if request.param == "memory":
        return {"REALTIME_BROKER": "memory"}
    env: dict[str, str] = request.getfixturevalue("kafka_env")
    return env


@pytest.fixture
def gateway_env(broker_env: dict[str, str]) -> dict[str, str]:
    return process_env(
        REALTIME_SECRET=SECRET,
        REALTIME_API_KEY=API_KEY,
        REALTIME_NODE_ID=f"node-{secrets.token_hex(3)}",
        **broker_env,
    )


@pytest.fixture
def live_gateway(gateway_env: dict[str, str]) -> Iterator[Gateway]:
    """A ``tidings serve`` process on the broker of ``broker_env``; must exit 0 on SIGTERM."""
    process = Gateway(gateway_env)
    try:
        yield process
    finally:
        code = process.stop()
        assert code == 0, f"gateway exited {code}:\n{process.output()}"
