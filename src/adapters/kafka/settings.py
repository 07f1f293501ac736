"""Kafka client settings by Kafka's own dotted names, translated for kafka-python, and the one
value every Kafka adapter is built from (``KafkaClientConfig``).

``KAFKA_PRODUCER_SETTINGS=linger.ms=10,batch.size=16384`` and ``KAFKA_CONSUMER_SETTINGS=...`` pass
settings through. Each name must be one kafka-python supports; an unknown name is an error that
suggests the closest known one. Settings that would break tidings' guarantees (``acks``,
``enable.auto.commit``, ``group.id`` ...) are refused with the reason.

This module never reads configuration: the composition root (``tidings.bootstrap``) translates the
operator's settings once, here, and hands the adapters a frozen ``KafkaClientConfig``.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping, Sequence
from types import MappingProxyType
from typing import Any, Final

import attrs

from ...domain import TopicStrategy
from ...domain.errors import ConfigurationError


def _bool(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"{value!r} is not a boolean (true or false)")


Converter = Callable[[str], Any]

NO_AUTO_CREATE: Final[Mapping[str, Any]] = {"allow_auto_create_topics": False}
"""For every consumer and producer: a metadata request never asks the broker to create the topics
it names. Brokers create topics on such requests by default (``auto.create.topics.enable``), and
a gateway reads and replays topics on clients' behalf; only the server creates topics (ADR 0016).
"""

_COMMON: dict[str, Converter] = {
    "client.id": str,
    "request.timeout.ms": int,
    "retry.backoff.ms": int,
    "reconnect.backoff.ms": int,
    "reconnect.backoff.max.ms": int,
    "connections.max.idle.ms": int,
    "metadata.max.age.ms": int,
    "receive.buffer.bytes": int,
    "send.buffer.bytes": int,
    "client.dns.lookup": str,
    "security.protocol": str,
    "ssl.cafile": str,
    "ssl.certfile": str,
    "ssl.keyfile": str,
    "ssl.password": str,
    "ssl.crlfile": str,
    "ssl.ciphers": str,
    "ssl.check.hostname": _bool,
    "sasl.mechanism": str,
    "sasl.plain.username": str,
    "sasl.plain.password": str,
    "sasl.kerberos.service.name": str,
    "sasl.kerberos.domain.name": str,
}

PRODUCER_SETTINGS: dict[str, Converter] = {
    **_COMMON,
    "linger.ms": int,
    "batch.size": int,
    "compression.type": str,
    "max.request.size": int,
    "delivery.timeout.ms": int,
    "max.block.ms": int,
    "retries": int,
    "max.in.flight.requests.per.connection": int,
}

CONSUMER_SETTINGS: dict[str, Converter] = {
    **_COMMON,
    "fetch.min.bytes": int,
    "fetch.max.wait.ms": int,
    "fetch.max.bytes": int,
    "max.partition.fetch.bytes": int,
    "session.timeout.ms": int,
    "heartbeat.interval.ms": int,
    "max.poll.interval.ms": int,
    "isolation.level": str,
    "check.crcs": _bool,
    "client.rack": str,
}

REFUSED: dict[str, str] = {
    "bootstrap.servers": "set KAFKA_BROKERS instead",
    "acks": "tidings always publishes with acks=all so no acknowledged message is lost",
    "enable.idempotence": "tidings always publishes idempotently so retries never duplicate",
    "transactional.id": "tidings does not publish in transactions",
    "group.id": "set KAFKA_CONSUMER_GROUP instead",
    "enable.auto.commit": "tidings commits only after a batch is handed on (at-least-once)",
    "auto.offset.reset": "tidings chooses where a new group starts (see ADR 0005)",
    "max.poll.records": "use --batch-size (the consumer's batch size)",
    "key.serializer": "tidings encodes records itself",
    "value.serializer": "tidings encodes records itself",
    "key.deserializer": "tidings decodes records itself",
    "value.deserializer": "tidings decodes records itself",
    "allow.auto.create.topics": "only the server creates topics, deliberately (ADR 0016)",
    "partition.assignment.strategy": "set KAFKA_CONSUMER_ASSIGNOR instead (ADR 0025)",
}


def translate(
    settings: Mapping[str, str], supported: Mapping[str, Converter], variable: str
) -> dict[str, Any]:
    """kafka-python keyword arguments for dotted Kafka settings, or a ``ConfigurationError``."""
    translated: dict[str, Any] = {}
    for name, value in settings.items():
        if name in REFUSED:
            raise ConfigurationError(f"{variable}: {name} cannot be set: {REFUSED[name]}")
        convert = supported.get(name)
        if convert is None:
            close = difflib.get_close_matches(name, list(supported), n=1)
            hint = f"; did you mean {close[0]}?" if close else ""
            raise ConfigurationError(f"{variable}: unknown Kafka setting {name!r}{hint}")
        try:
            translated[name.replace(".", "_")] = convert(value)
        except ValueError as exc:
            raise ConfigurationError(f"{variable}: {name}={value!r}: {exc}") from None
    return translated


def security_settings(translated: Mapping[str, Any]) -> dict[str, Any]:
    """The part of client settings every Kafka client (admin, consumer) must share."""
    return {
        name: value
        for name, value in translated.items()
        if name.startswith(("ssl_", "sasl_", "security_protocol", "client_dns_lookup"))
    }


def _frozen_mapping(value: Mapping[str, Any]) -> Mapping[str, Any]:
    return MappingProxyType(dict(value))


def _brokers(value: Sequence[str]) -> tuple[str, ...]:
    brokers = tuple(value)
    if not brokers:
        raise ConfigurationError("KAFKA_BROKERS: no broker address given")
    return brokers


@attrs.frozen(hash=False)
class KafkaClientConfig:
    """What every Kafka client of one process shares: where the cluster is, how to reach it, and
    how channels map to topics. Built once by the composition root; adapters read nothing else.

    ``producer_settings`` and ``consumer_settings`` are the pass-through settings already
    translated (``translate``), so building one from an operator's values is where a bad setting
    is refused (``KafkaClientConfig.translated``).
    """

    brokers: tuple[str, ...] = attrs.field(converter=_brokers)
    strategy: TopicStrategy
    timeout: float = 10.0
    """Seconds a client waits for an unreachable cluster before it fails (``KAFKA_TIMEOUT``)."""
    compression: str = "none"
    producer_settings: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    consumer_settings: Mapping[str, Any] = attrs.field(factory=dict, converter=_frozen_mapping)
    partitions: int = 1
    """Partitions of a topic tidings creates."""
    replication_factor: int = 1
    assignor: str = "cooperative-sticky"
    """How the members of a consumer group split its partitions (``KAFKA_CONSUMER_ASSIGNOR``);
    ``assignors.partition_assignor`` names the choices."""

    @classmethod
    def translated(
        cls,
        brokers: Sequence[str],
        strategy: TopicStrategy,
        *,
        producer_settings: Mapping[str, str],
        consumer_settings: Mapping[str, str],
        **values: Any,
    ) -> KafkaClientConfig:
        """A config from Kafka's dotted setting names; a bad one is a ``ConfigurationError``
        naming its variable (``KAFKA_PRODUCER_SETTINGS``, ``KAFKA_CONSUMER_SETTINGS``)."""
        return cls(
            brokers,
            strategy,
            producer_settings=translate(
                producer_settings, PRODUCER_SETTINGS, "KAFKA_PRODUCER_SETTINGS"
            ),
            consumer_settings=translate(
                consumer_settings, CONSUMER_SETTINGS, "KAFKA_CONSUMER_SETTINGS"
            ),
            **values,
        )

    @property
    def broker_list(self) -> list[str]:
        """The bootstrap servers as kafka-python takes them."""
        return list(self.brokers)

    def security(self, *, producer: bool = False) -> dict[str, Any]:
        """The TLS and SASL settings of the consumer's (or the producer's) pass-through settings,
        for the admin clients that serve them."""
        return security_settings(self.producer_settings if producer else self.consumer_settings)

    def consumer(self, client_id: str | None = None, **fixed: Any) -> dict[str, Any]:
        """Keyword arguments for a consumer: tidings' defaults (no group, no auto-commit,
        ``client_id``), then the pass-through settings, timeouts unless those set them, no topic
        auto-creation, then what this consumer fixes (``fixed``: its group, say)."""
        config: dict[str, Any] = {
            "bootstrap_servers": self.broker_list,
            "group_id": None,
            "enable_auto_commit": False,
        }
        if client_id is not None:
            config["client_id"] = client_id
        config.update(self.consumer_settings)
        timeout_ms = int(self.timeout * 1000)
        config.setdefault("request_timeout_ms", max(timeout_ms, 5_000))
        config.setdefault("bootstrap_timeout_ms", timeout_ms)
        config.update(NO_AUTO_CREATE)
        config.update(fixed)
        return config

    def producer(self, client_id: str, **fixed: Any) -> dict[str, Any]:
        """Keyword arguments for a producer: tidings' guarantees (``acks=all``, idempotence,
        bounded waits, no topic auto-creation), then the pass-through settings, then what this
        producer fixes (``fixed``)."""
        timeout_ms = int(self.timeout * 1000)
        passed = dict(self.producer_settings)
        compression = passed.pop("compression_type", self.compression)
        config: dict[str, Any] = {
            "bootstrap_servers": self.broker_list,
            "acks": "all",
            "enable_idempotence": True,
            "compression_type": None if compression == "none" else compression,
            "bootstrap_timeout_ms": timeout_ms,
            "max_block_ms": timeout_ms,
            "request_timeout_ms": max(1000, timeout_ms // 2),
            "delivery_timeout_ms": timeout_ms,
            "client_id": client_id,
            **NO_AUTO_CREATE,
        }
        config.update(passed)
        config.update(fixed)
        return config
