"""Gateways for the protocol tests: real ``tidings serve`` processes, on each broker.

Starting a gateway on Kafka costs a few seconds, so gateways are shared: one per configuration
and broker for the whole session (tests use their own channel names, see ``support.unique``).
The ``broker`` fixture is parametrized memory|kafka; a test that only makes sense on one broker
overrides it with ``@pytest.mark.parametrize("broker", ["kafka"], indirect=True)``.

Each Kafka gateway gets its own topic prefix and consumer group; its topics are deleted when the
session's gateways on that broker stop.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator

import pytest

from tests.conftest import API_KEY, SECRET
from tests.support.processes import Gateway, process_env
from tests.support.webhooks import WebhookReceiver

BROKERS = ("memory", "kafka")

RULES = ";".join(
    [
        "private-team.*=authenticated",
        "private-admin.*=users:1",
        "private-room.*=authenticated",
        "presence-chat.*=authenticated",
    ]
)
"""The main gateway's REALTIME_CHANNEL_RULES."""


class Gateways:
    """Starts gateways on one broker; ``stop_all`` stops them (each must exit 0)."""

    def __init__(self, broker: str, bootstrap: str | None) -> None:
        self.broker = broker
        self.bootstrap = bootstrap
        self.prefixes: list[str] = []
        self.groups: list[str] = []
        self.running: list[Gateway] = []

    def env(self, **settings: str) -> dict[str, str]:
        run = secrets.token_hex(4)
        broker: dict[str, str] = {"REALTIME_BROKER": self.broker}
        if self.broker == "kafka":
            assert self.bootstrap is not None
            prefix = f"tgw{run}"
            self.prefixes.append(prefix)
            self.groups.append(f"ggw{run}")
            broker.update(
                KAFKA_BROKERS=self.bootstrap,
                KAFKA_TOPIC_PREFIX=prefix,
                KAFKA_CONSUMER_GROUP=f"ggw{run}",
            )
        return process_env(
            REALTIME_SECRET=SECRET,
            REALTIME_API_KEY=API_KEY,
            REALTIME_NODE_ID=f"node-{run}",
            **broker,
            **settings,
        )

    def start(self, **settings: str) -> Gateway:
        env = self.env(**settings)
        gateway = Gateway(env)
        gateway.env = env  # type: ignore[attr-defined]
        self.running.append(gateway)
        return gateway

    def stop(self, gateway: Gateway) -> int:
        self.running.remove(gateway)
        return gateway.stop()

    def forget(self, gateway: Gateway) -> None:
        """Leave stopping ``gateway`` to the test (and its fixture), not to ``stop_all``."""
        self.running.remove(gateway)

    def stop_all(self) -> None:
        failures = []
        for gateway in list(self.running):
            code = self.stop(gateway)
            if code != 0:
                failures.append(f"gateway exited {code}:\n{gateway.output()}")
        self._delete_kafka_leftovers()
        assert not failures, "\n\n".join(failures)

    def _delete_kafka_leftovers(self) -> None:
        """Delete the topics and consumer groups of this session's Kafka gateways."""
        if not self.prefixes:
            return
        from kafka import KafkaAdminClient

        admin = KafkaAdminClient(bootstrap_servers=self.bootstrap)
        try:
            ours = [
                topic
                for topic in admin.list_topics()
                if any(topic.startswith(prefix) for prefix in self.prefixes)
            ]
            if ours:
                admin.delete_topics(ours)
            groups = [
                group["group_id"]
                for group in admin.list_groups()
                if any(group["group_id"].startswith(name + ".") for name in self.groups)
            ]
            if groups:
                admin.delete_groups(groups)
        finally:
            admin.close()


@pytest.fixture(scope="session", params=BROKERS)
def broker(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture(scope="session")
def gateways(broker: str, request: pytest.FixtureRequest) -> Iterator[Gateways]:
    bootstrap = request.getfixturevalue("kafka_bootstrap") if broker == "kafka" else None
    started = Gateways(broker, bootstrap)
    yield started
    started.stop_all()


@pytest.fixture(scope="session")
def gateway(gateways: Gateways) -> Gateway:
    """The main gateway: default limits, channel rules for the private and presence tests."""
    return gateways.start(REALTIME_CHANNEL_RULES=RULES)


@pytest.fixture(scope="session")
def strict_gateway(gateways: Gateways) -> Gateway:
    """Tight limits: 3 channels, 5 frames/s in bursts of 5, 2 s idle, 5 messages of history."""
    return gateways.start(
        REALTIME_MAX_CHANNELS="3",
        REALTIME_RATE_LIMIT="5",
        REALTIME_RATE_BURST="5",
        REALTIME_IDLE_TIMEOUT="2",
        REALTIME_HISTORY_SIZE="5",
    )


@pytest.fixture(scope="session")
def small_queue_gateway(gateways: Gateways) -> Gateway:
    """Per-connection queues of 50 frames, for the slow-consumer test."""
    return gateways.start(REALTIME_QUEUE_SIZE="50")


@pytest.fixture
def doomed_gateway(gateways: Gateways) -> Iterator[Gateway]:
    """A gateway of its own, for the test that shuts it down."""
    gateway = gateways.start()
    gateways.forget(gateway)
    try:
        yield gateway
    finally:
        gateway.kill()


# -- Pusher's HTTP API and webhooks (tests/gateway/test_pusher_*.py) ---------------------------

PUSHER_APP = {"app_id": "4242", "key": "pusher-test-key", "secret": "pusher-test-secret"}


@pytest.fixture(scope="session")
def webhook_receiver() -> Iterator[WebhookReceiver]:
    """A small HTTP server that takes every webhook request (200) and keeps it."""
    receiver = WebhookReceiver()
    try:
        yield receiver
    finally:
        receiver.close()


@pytest.fixture(scope="session")
def pusher_gateway(gateways: Gateways, webhook_receiver: WebhookReceiver) -> Gateway:
    """A gateway with a Pusher app, whose webhooks go to ``webhook_receiver``."""
    return gateways.start(
        REALTIME_CHANNEL_RULES=RULES,
        PUSHER_APP_ID=PUSHER_APP["app_id"],
        PUSHER_APP_KEY=PUSHER_APP["key"],
        PUSHER_APP_SECRET=PUSHER_APP["secret"],
        PUSHER_WEBHOOK_URL=webhook_receiver.url,
    )
