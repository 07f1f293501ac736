"""Configuration from the environment and ``.env`` (the environment wins), with the seed's names.

One ``Settings`` object holds every setting, validated when it is loaded; a bad value is a
``ConfigurationError`` that names the variable. Nothing is read at import time.
"""

from __future__ import annotations

import os
import re
import socket
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from .domain.access import AccessPolicy
from .domain.errors import ConfigurationError, InvalidAccessRule, InvalidOrigin, InvalidProxy
from .domain.origins import OriginPolicy
from .domain.proxies import TrustedProxies
from .domain.pusher import InvalidPusherApps, PusherApp, PusherApps, parse_apps
from .domain.topics import TopicStrategy, topic_strategy

BROKERS = ("memory", "kafka", "gateway")
"""``gateway`` only publishes: into a running gateway's ``POST /broadcast`` (ADR 0024)."""

Compression = Literal["none", "gzip", "snappy", "lz4", "zstd"]
LogFormat = Literal["text", "json"]

ASSIGNORS = ("cooperative-sticky", "roundrobin", "range", "sticky")
"""How a shared consumer group splits partitions among its members (``KAFKA_CONSUMER_ASSIGNOR``,
``tidings kafka consume --assignor``); the first is the default (ADR 0025): it spreads channels
evenly and moves only the partitions that change hands."""


def parse_kafka_settings(text: str, variable: str) -> dict[str, str]:
    """``linger.ms=10,batch.size=16384`` -> {"linger.ms": "10", ...}; the adapter checks names."""
    settings: dict[str, str] = {}
    for part in text.replace(";", ",").split(","):
        if not part.strip():
            continue
        name, sep, value = part.partition("=")
        if not sep or not name.strip() or not value.strip():
            raise ConfigurationError(f"{variable}: {part.strip()!r} is not of the form name=value")
        settings[name.strip()] = value.strip()
    return settings


_SECRET_WORDS = ("password", "secret", "token", "jaas")


def _mask_client_secrets(text: str) -> str:
    """``sasl.plain.password=x,linger.ms=5`` -> ``sasl.plain.password=********,linger.ms=5``."""
    parts = []
    for part in text.replace(";", ",").split(","):
        name, sep, _ = part.partition("=")
        secret = sep and any(word in name.lower() for word in _SECRET_WORDS)
        parts.append(f"{name}=********" if secret else part)
    return ",".join(parts)


_HOST_PORT = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d{1,5})")


def parse_broker_addresses(text: str) -> list[str]:
    """``k1:9092, k2:9092`` -> ["k1:9092", "k2:9092"]; a ``ValueError`` names an entry that is
    not ``host:port`` (``[::1]:9092`` for IPv6), or says the list is empty."""
    addresses = [part.strip() for part in text.split(",") if part.strip()]
    if not addresses:
        raise ValueError("no broker given; a comma list of host:port, such as localhost:9092")
    for address in addresses:
        match = _HOST_PORT.fullmatch(address)
        if match is None or not 0 < int(match.group(1)) < 65536:
            raise ValueError(
                f"{address!r} is not host:port; give a comma list such as kafka1:9092,kafka2:9092"
            )
    return addresses


def worker_count(text: str, cores: int) -> int:
    """How many gateway processes ``tidings serve --workers`` runs: ``auto`` is ``cores`` (those
    this process may use), a whole number from 1 is itself; anything else is a ``ValueError``
    that names the value."""
    value = text.strip().lower()
    if value == "auto":
        return max(1, cores)
    if value.isascii() and value.isdigit() and int(value) >= 1:
        return int(value)
    raise ValueError(f"{text!r} is not a whole number of workers from 1, nor 'auto'")


class InvalidSettings(ConfigurationError):
    """Values that cannot be loaded; ``problems`` holds one line per variable, naming it."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration: " + "; ".join(problems))


def _problem(error: Any) -> str:
    """One line for one of pydantic's validation errors: the variable, what is wrong with it,
    and the value given (masked where it may hold a secret)."""
    variable = ".".join(str(part) for part in error["loc"]).upper()
    cause = error.get("ctx", {}).get("error")
    message = str(cause) if isinstance(cause, ValueError) else str(error["msg"])
    message = message.removeprefix(f"{variable}: ")  # our validators name it already
    given = error.get("input")
    if variable in ("REALTIME_SECRET", "REALTIME_API_KEY", "PUSHER_APP_SECRET", "PUSHER_APPS"):
        given = "********"
    elif variable in ("KAFKA_PRODUCER_SETTINGS", "KAFKA_CONSUMER_SETTINGS") and isinstance(
        given, str
    ):
        given = _mask_client_secrets(given)
    return f"{variable}: {message} (got {given!r})"


class Settings(BaseSettings):
    """Every setting of tidings; the environment variable of a field is its name in upper case."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", frozen=True
    )

    # Broker choice and Kafka (the seed's names first).
    realtime_broker: str = "memory"
    kafka_brokers: str = "localhost:9092"
    kafka_topic_prefix: str = "realtime"
    kafka_consumer_group: str = "realtime-servers"
    kafka_consumer_assignor: str = ASSIGNORS[0]
    """How the members of a consumer group split its partitions (one of ``ASSIGNORS``)."""
    kafka_topic_strategy: str = "per-channel"
    kafka_shared_topics: int = Field(default=4, ge=1, le=1000)
    kafka_topic_partitions: int = Field(default=1, ge=1, le=10_000)
    kafka_replication_factor: int = Field(default=1, ge=1, le=100)
    kafka_compression: Compression = "none"
    kafka_producer_settings: str = ""
    """Producer settings by Kafka's own names: ``linger.ms=10,batch.size=16384``."""
    kafka_consumer_settings: str = ""
    """Consumer settings by Kafka's own names: ``fetch.min.bytes=1024,fetch.max.wait.ms=500``."""
    kafka_timeout: float = Field(default=10.0, gt=0, le=600)
    """Seconds a publish may wait for an unreachable Kafka before it fails."""
    realtime_outbox: str | None = None
    """Path of a SQLite outbox: broadcasts to Kafka or a gateway are stored first and survive
    an outage."""
    realtime_gateway_url: str | None = None
    """Where ``REALTIME_BROKER=gateway`` publishes: a running gateway, ``http://HOST:PORT``."""
    realtime_gateway_timeout: float = Field(default=15.0, gt=0, le=600)
    """Seconds a request to that gateway may wait (to connect, to send, for each part of the
    answer) before its messages fail; above the gateway's own ``KAFKA_TIMEOUT``, since a
    gateway on Kafka answers once Kafka did."""

    # The gateway.
    realtime_ws_host: str = "127.0.0.1"
    realtime_ws_port: int = Field(default=6001, ge=0, le=65535)
    realtime_secret: SecretStr | None = None
    realtime_api_key: SecretStr | None = None
    realtime_node_id: str | None = None
    realtime_channel_rules: str = ""
    realtime_demo: bool = False
    """Demo mode (``tidings serve --demo``): the page may mint tokens and broadcast. Local only."""
    realtime_allowed_origins: str = ""
    """Origins (``https://app.example.com``) whose pages may use the gateway besides its own:
    the Origin check of WebSocket upgrades and the CORS answer of HTTP endpoints. ``*``: all."""
    realtime_max_token_ttl: float | None = Field(default=None, gt=0)
    """Longest lifetime in seconds of a connection token, checked at issue and verification."""

    realtime_log_format: LogFormat = "text"
    """How log lines on stderr look: ``text`` for people, ``json`` (one object per line: time,
    level, logger, message, and connection, node, channel, code where they apply) for a log
    collector."""

    # Limits, with safe defaults.
    realtime_max_message_bytes: int = Field(default=65_536, ge=256)
    realtime_max_frame_bytes: int = Field(default=65_536, ge=256)
    realtime_max_channels: int = Field(default=100, ge=1)
    realtime_rate_limit: float = Field(default=50.0, gt=0)
    """Frames per second a client may send (a token bucket)."""
    realtime_rate_burst: int = Field(default=100, ge=1)
    realtime_flood_refusals: int = Field(default=200, ge=1)
    """Rate-limit refusals a client may run up before it is cut as a flooder (close 4029)."""
    realtime_presence_join_rate: float = Field(default=1.0, gt=0)
    """Presence channels one connection may join per second on average (each join and leave
    is announced to every member) ..."""
    realtime_presence_join_burst: int = Field(default=10, ge=1)
    """... and at once."""
    realtime_queue_size: int = Field(default=1_000, ge=1)
    """Frames queued for one client before it is cut off as too slow."""
    realtime_history_size: int = Field(default=1_000, ge=0)
    """Messages per channel the memory broker keeps for resume."""
    realtime_history_channels: int = Field(default=10_000, ge=1)
    """Channels whose history the memory broker keeps (the least recently used go first)."""
    realtime_history_bytes: int = Field(default=64 * 1024 * 1024, ge=0)
    """Bytes of memory the memory broker spends on history for resume, all channels together
    (envelopes and their bookkeeping; over it, the channel holding most gives up its oldest)."""
    realtime_max_connections: int = Field(default=20_000, ge=0)
    """Open connections (HTTP and WebSocket) the gateway serves at once; 0: no limit."""
    realtime_max_connections_per_ip: int = Field(default=500, ge=0)
    """Open connections from one client address; 0: no limit. Behind a proxy, every client
    has the proxy's address unless the proxy is listed in ``REALTIME_TRUSTED_PROXIES``."""
    realtime_trusted_proxies: str = ""
    """Addresses and networks of reverse proxies (``127.0.0.1,10.0.0.0/8``) whose
    ``X-Forwarded-For`` names the client, for the per-address limit and the logs; empty: the
    header is never read (docs/deploy.md)."""
    realtime_handshake_timeout: float = Field(default=10.0, gt=0)
    realtime_idle_timeout: float = Field(default=120.0, gt=0)
    """Seconds without any frame from a client before it is disconnected (clients ping)."""
    realtime_presence_timeout: float = Field(default=15.0, gt=0)
    """Seconds after which a silent gateway node's presence members are considered gone."""

    # Processes (ADR 0032).
    realtime_workers: str = "1"
    """Gateway processes ``tidings serve`` runs on its port: a whole number, or ``auto`` (one
    per core this process may use); ``--workers`` overrides it."""
    realtime_reuse_port: bool = False
    """Listen with ``SO_REUSEPORT``, so that several gateway processes share the port (set by
    ``tidings serve --workers`` for its workers)."""
    # The Pusher protocol (ADR 0035): one app by these three, all or none ...
    pusher_app_id: str | None = None
    pusher_app_key: str | None = None
    pusher_app_secret: SecretStr | None = None
    pusher_apps: SecretStr | None = None
    """... and more as a JSON list of ``{"id", "key", "secret"}`` (ADR 0036)."""
    pusher_webhook_url: str | None = None
    """Where webhooks go (``channel_occupied``... signed with the app secret); none when unset."""
    pusher_max_data_bytes: int = Field(default=10_240, ge=1, le=1_048_576)
    """Largest ``data`` of an event published through Pusher's HTTP API (Pusher: 10 KB)."""
    pusher_webhook_queue: int = Field(default=10_000, ge=1)
    """Webhook events held while the receiver does not take them; beyond, the oldest go."""

    @field_validator("pusher_webhook_url")
    @classmethod
    def _webhook_url(cls, value: str | None) -> str | None:
        """An http(s) URL with a host, or nothing."""
        if value is None or not value.strip():
            return None
        url = value.strip()
        try:
            parts = urlsplit(url)
            port_ok = parts.port != 0  # reading the port raises for one out of range
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise ValueError(f"{value!r} is not an http:// or https:// URL of a webhook receiver")
        return url

    @field_validator("realtime_broker")
    @classmethod
    def _known_broker(cls, value: str) -> str:
        if value not in BROKERS:
            raise ValueError(f"unknown broker {value!r}; known brokers: {', '.join(BROKERS)}")
        return value

    @field_validator("realtime_workers")
    @classmethod
    def _workers_syntax(cls, value: str) -> str:
        worker_count(value, 1)
        return value.strip().lower()

    @field_validator("kafka_consumer_assignor")
    @classmethod
    def _known_assignor(cls, value: str) -> str:
        if value not in ASSIGNORS:
            raise ValueError(f"unknown assignor {value!r}; known assignors: {', '.join(ASSIGNORS)}")
        return value

    @field_validator("realtime_gateway_url")
    @classmethod
    def _gateway_url(cls, value: str | None) -> str | None:
        """An http(s) URL with a host, without query or fragment; no trailing slash."""
        if value is None or not value.strip():
            return None
        url = value.strip().rstrip("/")
        try:
            parts = urlsplit(url)
            port_ok = parts.port != 0  # reading the port raises for one out of range
        except ValueError as exc:
            raise ValueError(f"{value!r} is not a URL: {exc}") from None
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
            raise ValueError(
                f"{value!r} is not an http:// or https:// URL of a gateway "
                "(like http://127.0.0.1:6001)"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"{value!r}: give the gateway's address without query or fragment")
        if parts.username is not None or parts.password is not None:
            raise ValueError(
                "the URL carries credentials: the gateway's key goes in REALTIME_API_KEY"
            )
        return url

    @field_validator("kafka_brokers")
    @classmethod
    def _broker_addresses(cls, value: str) -> str:
        parse_broker_addresses(value)
        return value

    @field_validator("kafka_producer_settings", "kafka_consumer_settings")
    @classmethod
    def _settings_syntax(cls, value: str, info: Any) -> str:
        parse_kafka_settings(value, info.field_name.upper())
        return value

    @field_validator("realtime_channel_rules")
    @classmethod
    def _rules_syntax(cls, value: str) -> str:
        try:
            AccessPolicy.parse(value)
        except InvalidAccessRule as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("realtime_trusted_proxies")
    @classmethod
    def _proxies_syntax(cls, value: str) -> str:
        try:
            TrustedProxies.parse(value)
        except InvalidProxy as exc:
            raise ValueError(str(exc)) from None
        return value

    @field_validator("realtime_allowed_origins")
    @classmethod
    def _origins_syntax(cls, value: str) -> str:
        try:
            OriginPolicy.parse(value)
        except InvalidOrigin as exc:
            raise ValueError(str(exc)) from None
        return value

    @classmethod
    def load(cls, env_file: str | Path | None = ".env", **overrides: Any) -> Settings:
        """Read the environment and ``env_file``; ``InvalidSettings`` (a ``ConfigurationError``)
        names every bad variable.

        Beyond each value's own form, what only the Kafka adapters could tell is checked here
        too, by their own checks: the topic strategy and prefix, and the names of the Kafka
        pass-through settings. A misspelt ``linger.ms`` is refused when the command starts, not
        by the first publish.
        """
        try:
            settings = cls(_env_file=env_file, **overrides)  # type: ignore[call-arg]
        except ValidationError as exc:
            raise InvalidSettings([_problem(error) for error in exc.errors()]) from None
        problems: list[str] = []
        for check in (settings.topic_strategy, settings.check_kafka_settings, settings.pusher):
            try:
                check()
            except ConfigurationError as exc:
                problems.append(str(exc))
        if problems:
            raise InvalidSettings(problems)
        return settings

    def check_kafka_settings(self) -> None:
        """Refuse a ``KAFKA_PRODUCER_SETTINGS`` or ``KAFKA_CONSUMER_SETTINGS`` name kafka-python
        does not take, or one tidings fixes itself, with the check the Kafka clients are built
        with (``adapters.kafka.settings.translate``), which suggests the closest known name; and
        a ``KAFKA_CONSUMER_ASSIGNOR`` the installed kafka-python cannot serve."""
        from .adapters.kafka.rebalance import check_assignor
        from .adapters.kafka.settings import CONSUMER_SETTINGS, PRODUCER_SETTINGS, translate

        translate(self.producer_settings, PRODUCER_SETTINGS, "KAFKA_PRODUCER_SETTINGS")
        translate(self.consumer_settings, CONSUMER_SETTINGS, "KAFKA_CONSUMER_SETTINGS")
        check_assignor(self.kafka_consumer_assignor)

    @property
    def broker_list(self) -> list[str]:
        """``KAFKA_BROKERS`` as a list (its form is checked at load: ``parse_broker_addresses``)."""
        return [broker.strip() for broker in self.kafka_brokers.split(",") if broker.strip()]

    @property
    def producer_settings(self) -> dict[str, str]:
        return parse_kafka_settings(self.kafka_producer_settings, "KAFKA_PRODUCER_SETTINGS")

    @property
    def consumer_settings(self) -> dict[str, str]:
        return parse_kafka_settings(self.kafka_consumer_settings, "KAFKA_CONSUMER_SETTINGS")

    def topic_strategy(self) -> TopicStrategy:
        return topic_strategy(
            self.kafka_topic_strategy, self.kafka_topic_prefix, self.kafka_shared_topics
        )

    def access_policy(self) -> AccessPolicy:
        return AccessPolicy.parse(self.realtime_channel_rules)

    def trusted_proxies(self) -> TrustedProxies:
        """``REALTIME_TRUSTED_PROXIES`` parsed (validated at load, so this does not raise)."""
        return TrustedProxies.parse(self.realtime_trusted_proxies)

    def pusher(self) -> PusherApps:
        """The Pusher apps this gateway serves (none: ``/app/{key}`` refuses every key): the one
        of ``PUSHER_APP_ID``, ``PUSHER_APP_KEY`` and ``PUSHER_APP_SECRET``, all three or none,
        and those of ``PUSHER_APPS`` (ADR 0036). Raises ``ConfigurationError`` naming the
        variable that is missing or wrong."""
        single = {
            "PUSHER_APP_ID": self.pusher_app_id,
            "PUSHER_APP_KEY": self.pusher_app_key,
            "PUSHER_APP_SECRET": (
                self.pusher_app_secret.get_secret_value() if self.pusher_app_secret else None
            ),
        }
        given = {name: value for name, value in single.items() if value}
        apps: list[PusherApp] = []
        if given:
            missing = [name for name in single if name not in given]
            if missing:
                raise ConfigurationError(
                    f"{', '.join(missing)}: not set, but {', '.join(given)} is: a Pusher app "
                    "needs all three of PUSHER_APP_ID, PUSHER_APP_KEY and PUSHER_APP_SECRET"
                )
            try:
                apps.append(PusherApp(*given.values()))
            except InvalidPusherApps as exc:
                raise ConfigurationError(f"PUSHER_APP_*: {exc}") from None
        listed = self.pusher_apps.get_secret_value().strip() if self.pusher_apps else ""
        try:
            if listed:
                apps.extend(parse_apps(listed))
            return PusherApps.of(apps)
        except InvalidPusherApps as exc:
            raise ConfigurationError(f"PUSHER_APPS: {exc}") from None

    def origin_policy(self) -> OriginPolicy:
        """``REALTIME_ALLOWED_ORIGINS`` parsed (validated at load, so this does not raise)."""
        return OriginPolicy.parse(self.realtime_allowed_origins)

    def node_id(self, port: int | None = None) -> str:
        """``REALTIME_NODE_ID``, or this host's name (plus the port, for gateways)."""
        if self.realtime_node_id:
            return self.realtime_node_id
        host = socket.gethostname() or "localhost"
        return f"{host}-{port}" if port is not None else host

    def secret(self) -> str | None:
        return self.realtime_secret.get_secret_value() if self.realtime_secret else None

    def api_key(self) -> str | None:
        return self.realtime_api_key.get_secret_value() if self.realtime_api_key else None

    def gateway_url(self) -> str:
        """``REALTIME_GATEWAY_URL``, or a ``ConfigurationError`` saying that the gateway broker
        needs it. Asked when the gateway publisher is built, not at load: ``tidings serve
        --broker gateway`` must be told that a gateway cannot be fed that way, not that a URL
        is missing."""
        if not self.realtime_gateway_url:
            raise ConfigurationError(
                "REALTIME_BROKER=gateway publishes into a running gateway: set "
                "REALTIME_GATEWAY_URL to its address (like http://127.0.0.1:6001) and "
                "REALTIME_API_KEY to its key"
            )
        return self.realtime_gateway_url

    def problems(self) -> list[str]:
        """What loads but would stop ``tidings serve``: a ``REALTIME_SECRET`` that is too short.

        The token adapter enforces the rule when it is built; asking it here lets ``tidings
        config`` show the problem instead of failing on it.
        """
        from .adapters.jwt_tokens import check_secret

        secret = self.secret()
        try:
            if secret:
                check_secret(secret)
        except ConfigurationError as exc:
            return [str(exc)]
        return []

    def effective(self) -> dict[str, Any]:
        """Every setting by its environment name, secrets masked, for ``tidings config``."""
        shown: dict[str, Any] = {}
        for name in type(self).model_fields:
            value = getattr(self, name)
            if isinstance(value, SecretStr):
                value = "********" if value.get_secret_value() else "(empty)"
            elif name in ("kafka_producer_settings", "kafka_consumer_settings") and value:
                value = _mask_client_secrets(value)
            elif value is None:
                value = "(not set)"
            shown[name.upper()] = value
        problems = self.problems()
        if problems:
            shown["(problems)"] = problems
        shown["(node id)"] = self.node_id()
        shown["(env file)"] = str(Path(".env").resolve()) if Path(".env").exists() else "(none)"
        shown["(environment overrides)"] = sorted(
            name.upper() for name in type(self).model_fields if name.upper() in os.environ
        )
        return shown
