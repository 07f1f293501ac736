"""Kafka configuration: pass-through settings, refusals, strategies and prefixes fail clearly.

Library level: ``Settings.load`` refuses a bad pass-through setting with the Kafka adapters' own
check, naming the variable; settings copied with one anyway meet the same check in the
composition root's ``kafka_client_config`` (what every Kafka adapter is built from) and in every
Kafka provider.
CLI level: a bad setting or argument exits 2 with the reason on stderr (``cli.py``: "Exit status
2: bad arguments or bad configuration").
"""

from __future__ import annotations

from typing import Any

import pytest

from tidings.adapters.kafka.publisher import KafkaPublisher
from tidings.bootstrap import Container, kafka_client_config
from tidings.config import Settings
from tidings.domain.errors import ConfigurationError, UnknownBroker

from .helpers import Cli, load_settings

pytestmark = pytest.mark.kafka

BASE = {"REALTIME_BROKER": "kafka", "KAFKA_BROKERS": "127.0.0.1:9092"}


def unchecked(**values: Any) -> Settings:
    """Settings with ``values`` copied in after loading, so nothing has checked them."""
    return load_settings(BASE).model_copy(update=values)


def refused(**values: Any) -> str:
    """The message ``values`` are refused with: when settings load, and by the composition
    root for settings that skipped the load's check (the same check, the same message)."""
    with pytest.raises(ConfigurationError) as at_load:
        load_settings(BASE, **values)
    with pytest.raises(ConfigurationError) as at_root:
        kafka_client_config(unchecked(**values))
    message = str(at_root.value)
    assert message in str(at_load.value)
    return message


# -- Library: pass-through settings ------------------------------------------------------------


def test_unknown_producer_setting_suggests_the_closest_name() -> None:
    message = refused(kafka_producer_settings="linger.msx=5")
    assert "KAFKA_PRODUCER_SETTINGS" in message
    assert "'linger.msx'" in message
    assert "did you mean linger.ms?" in message


@pytest.mark.parametrize("provider", ["kafka_subscriber", "kafka_history", "kafka_admin"])
def test_unknown_consumer_setting_suggests_the_closest_name(provider: str) -> None:
    """Every Kafka provider of the container refuses it, before any client is opened."""
    settings = unchecked(kafka_consumer_settings="fetch.min.byte=1024")
    container = Container.for_settings(settings)
    with pytest.raises(ConfigurationError) as caught:
        getattr(container, provider)()
    container.shutdown_resources()
    message = str(caught.value)
    assert "KAFKA_CONSUMER_SETTINGS" in message
    assert "did you mean fetch.min.bytes?" in message


@pytest.mark.parametrize(
    ("variable", "setting", "reason"),
    [
        ("kafka_producer_settings", "acks=1", "acks=all"),
        ("kafka_producer_settings", "enable.idempotence=false", "idempotently"),
        ("kafka_producer_settings", "bootstrap.servers=a:1", "KAFKA_BROKERS"),
        ("kafka_consumer_settings", "enable.auto.commit=true", "commits only after"),
        ("kafka_consumer_settings", "group.id=other", "KAFKA_CONSUMER_GROUP"),
        ("kafka_consumer_settings", "max.poll.records=5", "--batch-size"),
    ],
)
def test_settings_that_would_break_guarantees_are_refused_with_the_reason(
    variable: str, setting: str, reason: str
) -> None:
    message = refused(**{variable: setting})
    assert f"{setting.split('=')[0]} cannot be set" in message
    assert reason in message


@pytest.mark.parametrize(
    ("setting", "expected"),
    [("linger.ms=abc", "linger.ms='abc'"), ("batch.size=1.5", "batch.size='1.5'")],
)
def test_bad_values_name_the_setting_and_the_value(setting: str, expected: str) -> None:
    message = refused(kafka_producer_settings=setting)
    assert "KAFKA_PRODUCER_SETTINGS" in message
    assert expected in message


def test_bad_boolean_names_the_setting() -> None:
    message = refused(kafka_consumer_settings="check.crcs=maybe")
    assert "check.crcs='maybe'" in message and "not a boolean" in message


def test_settings_without_a_value_are_a_load_error() -> None:
    with pytest.raises(ConfigurationError, match=r"KAFKA_PRODUCER_SETTINGS.*name=value"):
        load_settings(BASE, kafka_producer_settings="linger.ms")


def test_the_seed_tuning_settings_are_accepted() -> None:
    """The seed's tuning examples pass through (compression.type overrides KAFKA_COMPRESSION)."""
    settings = load_settings(
        BASE,
        kafka_producer_settings="compression.type=snappy,batch.size=16384,linger.ms=10",
        kafka_consumer_settings="fetch.min.bytes=1024,fetch.max.wait.ms=500",
    )
    config = kafka_client_config(settings)
    publisher = KafkaPublisher(config, client_id="tidings-test")
    try:
        assert publisher._config["compression_type"] == "snappy"
        assert publisher._config["linger_ms"] == 10
        assert publisher._config["batch_size"] == 16384
        assert publisher._config["acks"] == "all"
        assert publisher._config["enable_idempotence"] is True
    finally:
        publisher.close()
    consumer = config.consumer("tidings-test", group_id="g")
    assert consumer["fetch_min_bytes"] == 1024
    assert consumer["fetch_max_wait_ms"] == 500
    assert consumer["group_id"] == "g"
    assert consumer["enable_auto_commit"] is False


# -- Library: strategies, prefixes, enumerations -----------------------------------------------


def test_unknown_topic_strategy_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(BASE, kafka_topic_strategy="round-robin")
    message = str(caught.value)
    assert "KAFKA_TOPIC_STRATEGY 'round-robin' is unknown" in message
    assert "per-channel" in message and "shared" in message


@pytest.mark.parametrize("prefix", ["my.app", "", "-leading", "sp ace"])
def test_bad_topic_prefix_is_refused(prefix: str) -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(BASE, kafka_topic_prefix=prefix)
    message = str(caught.value)
    assert "KAFKA_TOPIC_PREFIX" in message
    assert repr(prefix) in message


def test_dot_in_prefix_explains_kafka_collision_rule() -> None:
    with pytest.raises(ConfigurationError, match=r"no '\.'"):
        load_settings(BASE, kafka_topic_prefix="my.app")


def test_unknown_compression_lists_the_codecs() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(BASE, kafka_compression="brotli")
    message = str(caught.value)
    assert "KAFKA_COMPRESSION" in message
    for codec in ("none", "gzip", "snappy", "lz4", "zstd"):
        assert codec in message


def test_unknown_broker_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as caught:
        load_settings(BASE, realtime_broker="rabbit")
    message = str(caught.value)
    assert "unknown broker 'rabbit'" in message
    assert "memory" in message and "kafka" in message


# -- CLI: exit 2 and the reason on stderr ------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("KAFKA_PRODUCER_SETTINGS", "linger.msx=5", "did you mean linger.ms?"),
        ("KAFKA_PRODUCER_SETTINGS", "acks=1", "tidings always publishes with acks=all"),
        ("KAFKA_PRODUCER_SETTINGS", "linger.ms=abc", "linger.ms='abc'"),
        ("KAFKA_TOPIC_STRATEGY", "bogus", "known strategies: per-channel, shared"),
        ("KAFKA_TOPIC_PREFIX", "my.app", "KAFKA_TOPIC_PREFIX 'my.app'"),
    ],
)
def test_publish_with_bad_settings_exits_2_with_the_reason(
    cli: Cli, variable: str, value: str, expected: str
) -> None:
    run = cli.run(["publish", "chat.1", "hello"], {**BASE, variable: value}, timeout=30)
    assert run.code == 2, run.describe()
    assert expected in run.err, run.describe()
    assert run.stdout == [], "nothing may be published"


def test_consume_with_bad_consumer_settings_exits_2(cli: Cli) -> None:
    """A configuration error is exit status 2 for every command, consume included."""
    run = cli.run(
        ["kafka", "consume", "--channels", "chat.1", "--stop-when-empty"],
        {**BASE, "KAFKA_CONSUMER_SETTINGS": "enable.auto.commit=true"},
        timeout=30,
    )
    assert "enable.auto.commit cannot be set" in run.err, run.describe()
    assert run.code == 2, run.describe()


def test_config_with_unknown_strategy_exits_2(cli: Cli) -> None:
    run = cli.run(["config"], {**BASE, "KAFKA_TOPIC_STRATEGY": "bogus"}, timeout=30)
    assert run.code == 2, run.describe()
    assert "KAFKA_TOPIC_STRATEGY 'bogus' is unknown" in run.err


@pytest.mark.parametrize(
    "args",
    [
        ["publish", "chat.1", "hello", "--broker", "rabbit"],
        ["kafka", "consume", "--channels", "chat.1", "--broker", "rabbit"],
    ],
    ids=["publish", "consume"],
)
def test_unknown_broker_option_exits_2_listing_known_names(cli: Cli, args: list[str]) -> None:
    run = cli.run(args, BASE, timeout=30)
    assert run.code == 2, run.describe()
    assert "'rabbit'" in run.err
    assert "'memory'" in run.err and "'kafka'" in run.err


def test_unknown_broker_in_environment_exits_2_listing_known_names(cli: Cli) -> None:
    run = cli.run(["publish", "chat.1", "hello"], {**BASE, "REALTIME_BROKER": "rabbit"}, timeout=30)
    assert run.code == 2, run.describe()
    assert "known brokers: memory, kafka, gateway" in run.err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ([], "Missing option '--channels'"),
        (["--channels", ","], "give at least one channel"),
        (["--channels", "bad chan"], "invalid channel 'bad chan'"),
    ],
    ids=["missing", "empty", "invalid"],
)
def test_consume_without_valid_channels_exits_2(cli: Cli, args: list[str], expected: str) -> None:
    run = cli.run(["kafka", "consume", *args], BASE, timeout=30)
    assert run.code == 2, run.describe()
    assert expected in run.err, run.describe()


def test_the_container_names_an_unknown_broker_even_in_settings_built_without_validation() -> None:
    """``Settings`` refuses an unknown broker when it loads; settings copied with one anyway
    still get ``UnknownBroker`` listing the known ones from every broker-selected provider."""
    settings = load_settings(BASE).model_copy(update={"realtime_broker": "rabbit"})
    container = Container.for_settings(settings)
    for provider in (container.subscriber, container.history, container.presence_bus):
        with pytest.raises(UnknownBroker, match=r"rabbit.*kafka, memory"):
            provider()
    container.shutdown_resources()
