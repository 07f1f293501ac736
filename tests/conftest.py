"""Fixtures shared by every test tier, and the markers that sort tests into tiers.

``scripts/test --fast`` runs ``-m "not kafka and not browser and not slow"``: a test that needs the
real broker or Chromium must carry the marker, whatever way it reaches them. Marking by hand is
easy to forget (a test parametrised by ``broker_env`` needs Kafka for one of its two cases only),
so ``pytest_collection_modifyitems`` marks every test from the fixtures it uses.
"""

from __future__ import annotations

import logging
import secrets
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from .support.kafka import ensure_kafka
from .support.processes import Gateway, process_env

SECRET = "test-secret-" + "x" * 32
API_KEY = "test-api-key"

KAFKA_FIXTURES = frozenset({"kafka_bootstrap", "kafka_node"})
"""Fixtures that reach a real Kafka broker (the run's, or a disposable one of the fault tests)."""

BROKER_PARAMETERS = frozenset({"broker_env", "broker"})
"""Fixtures parametrised by broker name: their ``"kafka"`` case reaches Kafka through
``request.getfixturevalue``, which the fixture closure cannot show."""

BROWSER_FIXTURES = frozenset({"browser"})

SLOW_DIRECTORIES = ("reliability",)
"""Tiers of fuzzing, floods and soaks: minutes of CPU, no use in the edit loop."""

TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each test ``kafka``, ``browser`` or ``slow`` from what it uses and where it lives."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        callspec = getattr(item, "callspec", None)
        params = callspec.params if callspec is not None else {}
        if used & KAFKA_FIXTURES or any(params.get(name) == "kafka" for name in BROKER_PARAMETERS):
            item.add_marker(pytest.mark.kafka)
        if used & BROWSER_FIXTURES:
            item.add_marker(pytest.mark.browser)
        path = item.path.resolve()
        if path.is_relative_to(TESTS) and path.relative_to(TESTS).parts[0] in SLOW_DIRECTORIES:
            item.add_marker(pytest.mark.slow)


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


@pytest.fixture
def app_env(live_gateway: Gateway, broker_env: dict[str, str]) -> dict[str, str]:
    """What an app process needs to issue tokens and publish to ``live_gateway``: the same
    secret, and the gateway publisher when the gateway is on the memory broker, else Kafka."""
    if broker_env["REALTIME_BROKER"] == "memory":
        publishing = {
            "REALTIME_BROKER": "gateway",
            "REALTIME_GATEWAY_URL": live_gateway.url,
            "REALTIME_API_KEY": API_KEY,
        }
    else:
        publishing = dict(broker_env)
    return process_env(REALTIME_SECRET=SECRET, **publishing)


@pytest.fixture
def command_logging() -> Iterator[None]:
    """The command's logging setup for one test, undone afterwards."""
    loggers = [logging.getLogger(name) for name in ("kafka", "kafka.coordinator.assignors")]
    saved = [(each.level, each.propagate, list(each.handlers)) for each in loggers]
    try:
        yield
    finally:
        for each, (level, propagate, handlers) in zip(loggers, saved, strict=True):
            each.setLevel(level)
            each.propagate = propagate
            each.handlers[:] = handlers


@pytest.fixture
def closed_port() -> int:
    """A local port nothing listens on: bound, read, closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port
