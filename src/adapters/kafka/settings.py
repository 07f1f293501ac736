"""Kafka client settings by Kafka's own dotted names, translated for kafka-python.

``KAFKA_PRODUCER_SETTINGS=linger.ms=10,batch.size=16384`` and ``KAFKA_CONSUMER_SETTINGS=...`` pass
settings through. Each name must be one kafka-python supports; an unknown name is an error that
suggests the closest known one. Settings that would break tidings' guarantees (``acks``,
``enable.auto.commit``, ``group.id`` ...) are refused with the reason.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Mapping
from typing import Any, Final

from ...config import Settings
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


def consumer_config(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for every consumer tidings opens: pass-through settings and timeouts."""
    config = translate(settings.consumer_settings, CONSUMER_SETTINGS, "KAFKA_CONSUMER_SETTINGS")
    timeout_ms = int(settings.kafka_timeout * 1000)
    config.setdefault("request_timeout_ms", max(timeout_ms, 5_000))
    config.setdefault("bootstrap_timeout_ms", timeout_ms)
    config.update(NO_AUTO_CREATE)
    return config


def producer_config(settings: Settings, client_id: str) -> dict[str, Any]:
    """Keyword arguments for the publisher's producer: tidings' guarantees (``acks=all``,
    idempotence, bounded waits, no topic auto-creation), then the pass-through settings."""
    timeout_ms = int(settings.kafka_timeout * 1000)
    passed = translate(settings.producer_settings, PRODUCER_SETTINGS, "KAFKA_PRODUCER_SETTINGS")
    compression = passed.pop("compression_type", settings.kafka_compression)
    config: dict[str, Any] = {
        "bootstrap_servers": settings.broker_list,
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
    return config
