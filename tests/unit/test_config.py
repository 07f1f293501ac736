"""Settings: the seed's names, environment over .env, errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from tidings import ConfigurationError
from tidings.config import InvalidSettings, Settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    import os

    for name in list(os.environ):
        if name.startswith(("REALTIME_", "KAFKA_", "PUSHER_")):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults_are_the_seeds(clean_env: Path) -> None:
    settings = Settings.load()
    assert settings.realtime_broker == "memory"
    assert settings.broker_list == ["localhost:9092"]
    assert settings.kafka_topic_prefix == "realtime"
    assert settings.kafka_consumer_group == "realtime-servers"
    assert (settings.realtime_ws_host, settings.realtime_ws_port) == ("127.0.0.1", 6001)


def test_environment_wins_over_dotenv(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text(
        "KAFKA_BROKERS=a:1,b:2\nKAFKA_TOPIC_PREFIX=fromfile\nREALTIME_BROKER=kafka\n"
    )
    monkeypatch.setenv("KAFKA_TOPIC_PREFIX", "fromenv")
    settings = Settings.load()
    assert settings.broker_list == ["a:1", "b:2"]
    assert settings.kafka_topic_prefix == "fromenv"
    assert settings.realtime_broker == "kafka"


@pytest.mark.parametrize(
    ("variable", "value", "expected"),
    [
        ("REALTIME_BROKER", "redis", "known brokers: memory, kafka, gateway"),
        ("REALTIME_GATEWAY_URL", "127.0.0.1:6001", "REALTIME_GATEWAY_URL.*not an http"),
        ("REALTIME_GATEWAY_URL", "ftp://gw.example", "REALTIME_GATEWAY_URL.*not an http"),
        ("REALTIME_GATEWAY_URL", "http://127.0.0.1:99999", "REALTIME_GATEWAY_URL.*not a URL"),
        ("REALTIME_GATEWAY_URL", "http://gw/?key=1", "REALTIME_GATEWAY_URL.*without query"),
        ("REALTIME_GATEWAY_URL", "http://me:pw@gw", "REALTIME_GATEWAY_URL.*REALTIME_API_KEY"),
        ("REALTIME_GATEWAY_TIMEOUT", "0", "REALTIME_GATEWAY_TIMEOUT"),
        ("REALTIME_WS_PORT", "abc", "REALTIME_WS_PORT"),
        ("KAFKA_COMPRESSION", "brotli", "KAFKA_COMPRESSION"),
        ("KAFKA_TOPIC_STRATEGY", "random", "known strategies"),
        ("KAFKA_TOPIC_PREFIX", "a.b", "KAFKA_TOPIC_PREFIX"),
        ("KAFKA_PRODUCER_SETTINGS", "linger.ms", "not of the form name=value"),
        ("REALTIME_CHANNEL_RULES", "private-*=maybe", "unknown rule 'maybe'"),
        ("KAFKA_BROKERS", "kafka1", "KAFKA_BROKERS: 'kafka1' is not host:port"),
        ("KAFKA_BROKERS", "kafka1:0", "'kafka1:0' is not host:port"),
        ("KAFKA_BROKERS", " , ", "KAFKA_BROKERS: no broker given"),
        ("KAFKA_PRODUCER_SETTINGS", "lingr.ms=5", "'lingr.ms'; did you mean linger.ms"),
        ("KAFKA_CONSUMER_SETTINGS", "group.id=x", "KAFKA_CONSUMER_SETTINGS: group.id cannot be"),
        ("KAFKA_CONSUMER_ASSIGNOR", "fair", "unknown assignor 'fair'; known assignors: coop"),
        ("REALTIME_TRUSTED_PROXIES", "127.0.0.1,*", "REALTIME_TRUSTED_PROXIES: .*'\\*'"),
        ("REALTIME_TRUSTED_PROXIES", "10.0.0.1/8", "host bits set: the network is 10.0.0.0/8"),
        ("REALTIME_TRUSTED_PROXIES", "nginx", "TRUSTED_PROXIES: invalid trusted proxy 'nginx'"),
        (
            "KAFKA_CONSUMER_SETTINGS",
            "partition.assignment.strategy=range",
            "set KAFKA_CONSUMER_ASSIGNOR instead",
        ),
    ],
)
def test_bad_values_name_the_variable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, variable: str, value: str, expected: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigurationError, match=expected):
        Settings.load()


def test_every_bad_value_is_named_at_once(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One run of ``tidings config --check`` shows them all, not the first one per fix."""
    monkeypatch.setenv("KAFKA_BROKERS", "nope")
    monkeypatch.setenv("REALTIME_WS_PORT", "abc")
    with pytest.raises(InvalidSettings) as caught:
        Settings.load()
    assert [problem.split(":")[0] for problem in caught.value.problems] == [
        "KAFKA_BROKERS",
        "REALTIME_WS_PORT",
    ]


def test_broker_addresses_take_names_addresses_and_ipv6(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_BROKERS", "kafka-1.internal:9092, 10.0.0.7:9093,[::1]:9094,")
    assert Settings.load().broker_list == ["kafka-1.internal:9092", "10.0.0.7:9093", "[::1]:9094"]


def test_effective_configuration_masks_secrets(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_SECRET", "very-secret-value")
    shown = Settings.load().effective()
    assert shown["REALTIME_SECRET"] == "********"
    assert shown["REALTIME_API_KEY"] == "(not set)"
    assert "very-secret-value" not in repr(shown)
    assert "REALTIME_SECRET" in shown["(environment overrides)"]


def test_node_id_defaults_to_host_and_port(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import socket

    assert Settings.load().node_id(6001) == f"{socket.gethostname()}-6001"
    monkeypatch.setenv("REALTIME_NODE_ID", "edge-1")
    assert Settings.load().node_id(6001) == "edge-1"


def test_kafka_pass_through_settings_parse(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KAFKA_PRODUCER_SETTINGS", "linger.ms=10, batch.size=16384")
    monkeypatch.setenv("KAFKA_CONSUMER_SETTINGS", "fetch.min.bytes=1024;fetch.max.wait.ms=500")
    settings = Settings.load()
    assert settings.producer_settings == {"linger.ms": "10", "batch.size": "16384"}
    assert settings.consumer_settings == {"fetch.min.bytes": "1024", "fetch.max.wait.ms": "500"}


def test_every_limit_setting_reaches_the_gateways_limits(monkeypatch: pytest.MonkeyPatch) -> None:
    from tidings.bootstrap import Container

    for name, value in {
        "REALTIME_RATE_LIMIT": "7",
        "REALTIME_RATE_BURST": "8",
        "REALTIME_FLOOD_REFUSALS": "9",
        "REALTIME_PRESENCE_JOIN_RATE": "2",
        "REALTIME_PRESENCE_JOIN_BURST": "3",
        "REALTIME_MAX_CHANNELS": "4",
        "REALTIME_QUEUE_SIZE": "5",
        "REALTIME_IDLE_TIMEOUT": "6",
        "REALTIME_MAX_FRAME_BYTES": "1000",
    }.items():
        monkeypatch.setenv(name, value)
    limits = Container.for_settings(Settings.load(env_file=None)).limits()
    assert (limits.rate, limits.burst, limits.flood_refusals) == (7, 8, 9)
    assert (limits.presence_rate, limits.presence_burst) == (2, 3)
    assert (limits.max_channels, limits.queue_size, limits.idle_timeout) == (4, 5, 6)
    assert limits.max_frame_bytes == 1000


def test_the_gateway_url_keeps_its_path_without_a_trailing_slash(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REALTIME_BROKER", "gateway")
    monkeypatch.setenv("REALTIME_GATEWAY_URL", " https://app.example.com/realtime/ ")
    settings = Settings.load()
    assert settings.gateway_url() == "https://app.example.com/realtime"


def test_the_gateway_broker_without_a_url_is_a_clear_error_when_it_publishes(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Loading succeeds (``tidings serve --broker gateway`` must say what is really wrong);
    the first broadcast names the missing variable."""
    from tidings.bootstrap import Container

    monkeypatch.setenv("REALTIME_BROKER", "gateway")
    container = Container.for_settings(Settings.load())
    try:
        with pytest.raises(ConfigurationError, match="set REALTIME_GATEWAY_URL"):
            container.realtime().broadcast("public.news", "e")
    finally:
        container.shutdown_resources()


@pytest.mark.parametrize("provider", ["subscriber", "history", "presence_bus"])
def test_nothing_reads_through_the_gateway_broker(provider: str) -> None:
    """A gateway cannot be fed by another gateway's HTTP API: every read-side provider refuses
    ``gateway`` with the same sentence."""
    from tidings.bootstrap import Container

    settings = Settings.load(
        env_file=None, realtime_broker="gateway", realtime_gateway_url="http://127.0.0.1:6001"
    )
    container = Container.for_settings(settings)
    with pytest.raises(ConfigurationError, match="cannot be fed by another gateway's HTTP API"):
        getattr(container, provider)()


def test_the_assignor_defaults_to_cooperative_sticky_and_reaches_the_kafka_config(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tidings.bootstrap import kafka_client_config

    assert Settings.load().kafka_consumer_assignor == "cooperative-sticky"
    assert kafka_client_config(Settings.load()).assignor == "cooperative-sticky"
    monkeypatch.setenv("KAFKA_CONSUMER_ASSIGNOR", "cooperative-sticky")
    assert kafka_client_config(Settings.load()).assignor == "cooperative-sticky"


@pytest.mark.parametrize("assignor", ["roundrobin", "range", "sticky"])
def test_an_eager_assignor_is_taken_only_from_kafka_python_3_0_9(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, assignor: str
) -> None:
    """Before 3.0.9 an eager rebalance stops a consumer reading the partitions it keeps (ADR
    0025): refused at load, naming the version needed; from 3.0.9 on, taken."""
    from tidings.adapters.kafka.rebalance import EAGER_SINCE, kafka_python_version

    monkeypatch.setenv("KAFKA_CONSUMER_ASSIGNOR", assignor)
    if kafka_python_version() >= EAGER_SINCE:
        assert Settings.load().kafka_consumer_assignor == assignor
    else:
        with pytest.raises(ConfigurationError, match=f"{assignor} needs kafka-python 3.0.9"):
            Settings.load()


def test_trusted_proxies_reach_the_listener(monkeypatch: pytest.MonkeyPatch) -> None:
    """The gateway's listener believes X-Forwarded-For from the configured proxies only."""
    from tidings.bootstrap import Container

    monkeypatch.setenv("REALTIME_TRUSTED_PROXIES", "127.0.0.1, 10.0.0.0/8")
    server = Container.for_settings(Settings.load(env_file=None)).web_server()
    settings = Settings.load(env_file=None)
    assert str(settings.trusted_proxies()) == "127.0.0.1/32,10.0.0.0/8"
    assert server.trusted_proxies == settings.trusted_proxies()


def test_one_pusher_app_needs_all_three_variables(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert not Settings.load().pusher()
    monkeypatch.setenv("PUSHER_APP_ID", "1")
    monkeypatch.setenv("PUSHER_APP_KEY", "app-key")
    with pytest.raises(InvalidSettings, match="PUSHER_APP_SECRET: not set") as refused:
        Settings.load()
    assert "PUSHER_APP_ID" not in str(refused.value).split(":")[0]
    monkeypatch.setenv("PUSHER_APP_SECRET", "pusher-secret-value")
    app = Settings.load().pusher().by_key("app-key")
    assert app is not None
    assert (app.id, app.secret) == ("1", "pusher-secret-value")


def test_more_pusher_apps_come_from_pusher_apps_json(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUSHER_APP_ID", "1")
    monkeypatch.setenv("PUSHER_APP_KEY", "one")
    monkeypatch.setenv("PUSHER_APP_SECRET", "s1")
    monkeypatch.setenv("PUSHER_APPS", '[{"id": "2", "key": "two", "secret": "s2"}]')
    apps = Settings.load().pusher()
    assert [app.key for app in apps.apps] == ["one", "two"]
    assert apps.by_id("2") is apps.by_key("two")
    monkeypatch.setenv("PUSHER_APPS", '[{"id": "3", "key": "one", "secret": "hush-hush"}]')
    with pytest.raises(InvalidSettings, match="PUSHER_APPS: two Pusher apps have the key 'one'"):
        Settings.load()
    monkeypatch.setenv("PUSHER_APPS", '[{"id": "3", "key": "three"}]')
    with pytest.raises(InvalidSettings, match="PUSHER_APPS: app 0: missing secret"):
        Settings.load()


def test_tidings_config_masks_the_pusher_secrets(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUSHER_APP_ID", "1")
    monkeypatch.setenv("PUSHER_APP_KEY", "app-key")
    monkeypatch.setenv("PUSHER_APP_SECRET", "pusher-secret-value")
    monkeypatch.setenv("PUSHER_APPS", '[{"id": "2", "key": "k2", "secret": "second-secret"}]')
    shown = Settings.load().effective()
    assert shown["PUSHER_APP_SECRET"] == shown["PUSHER_APPS"] == "********"
    assert shown["PUSHER_APP_KEY"] == "app-key"
    assert "pusher-secret-value" not in repr(shown)
    assert "second-secret" not in repr(shown)
