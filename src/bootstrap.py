"""The composition root: the one place that knows which adapter serves which port.

Entrypoints build a ``Container`` (``Container.for_settings``), the library helpers use the
process-wide one (``tidings.realtime()``), and tests override providers with fakes. Kafka adapters
and the gateway publisher (httpx) are imported only when their provider is first called, so the
memory broker needs neither.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, NoReturn

from dependency_injector import containers, providers

from .adapters.jwt_tokens import JwtTokens, new_secret
from .adapters.memory import MemoryBroker
from .adapters.memory.presence import LocalPresenceBus
from .adapters.prometheus import PrometheusMetrics
from .adapters.web import WebServer, bundled_file
from .adapters.webhook_sender import HttpWebhookTransport
from .application.gateway import Gateway, Limits
from .application.gateway.admission import UpgradeAdmission
from .application.gateway.http_api import GatewayHttp
from .application.gateway.pusher_api import PusherHttp
from .application.gateway.webhooks import WebhookQueue
from .application.realtime import RealtimeService
from .config import BROKERS, Settings
from .domain import AccessPolicy, Message
from .domain.errors import ConfigurationError, UnknownBroker
from .ports import (
    FeedOptions,
    GatewayMetrics,
    GroupMode,
    History,
    Pending,
    PresenceBus,
    Publisher,
    Subscriber,
)

if TYPE_CHECKING:
    from .adapters.http_publisher import GatewayPublisher
    from .adapters.kafka.admin import KafkaAdmin
    from .adapters.kafka.publisher import KafkaPublisher
    from .adapters.kafka.settings import KafkaClientConfig
    from .adapters.outbox import SqliteOutbox


def _memory_broker(settings: Settings) -> Iterator[MemoryBroker]:
    broker = MemoryBroker(
        history_size=settings.realtime_history_size,
        history_channels=settings.realtime_history_channels,
        history_bytes=settings.realtime_history_bytes,
    )
    yield broker
    broker.close()


def kafka_client_config(settings: Settings) -> KafkaClientConfig:
    """What every Kafka client of this process is built from: the one place Kafka settings are
    read. A bad pass-through setting is a ``ConfigurationError`` naming its variable."""
    from .adapters.kafka.settings import KafkaClientConfig

    return KafkaClientConfig.translated(
        settings.broker_list,
        settings.topic_strategy(),
        producer_settings=settings.producer_settings,
        consumer_settings=settings.consumer_settings,
        timeout=settings.kafka_timeout,
        compression=settings.kafka_compression,
        partitions=settings.kafka_topic_partitions,
        replication_factor=settings.kafka_replication_factor,
        assignor=settings.kafka_consumer_assignor,
    )


def _kafka_admin(config: KafkaClientConfig) -> Iterator[KafkaAdmin]:
    """Topic administration for commands (``tidings kafka ...``); adapters own their own."""
    from .adapters.kafka.admin import KafkaAdmin

    admin = KafkaAdmin.for_config(config)
    yield admin
    admin.close()


def _kafka_producer(settings: Settings, config: KafkaClientConfig) -> Iterator[KafkaPublisher]:
    """The process's one Kafka producer, shared by broadcasts and client events."""
    from .adapters.kafka.publisher import KafkaPublisher

    publisher = KafkaPublisher(config, client_id=f"tidings-publisher-{settings.node_id()}")
    yield publisher
    publisher.close()


def _outbox_store(settings: Settings) -> Iterator[SqliteOutbox | None]:
    """The durable outbox ``REALTIME_OUTBOX`` names, or None when it names none."""
    if not settings.realtime_outbox:
        yield None
        return
    from .adapters.outbox import SqliteOutbox

    store = SqliteOutbox(settings.realtime_outbox)
    yield store
    store.close()


def _behind_outbox(publisher: Publisher, store: SqliteOutbox | None) -> Iterator[Publisher]:
    """A broker's publisher (Kafka's, the gateway's), behind the durable outbox when
    ``REALTIME_OUTBOX`` names one."""
    if store is None:
        yield publisher  # closed by its own provider
        return
    from .adapters.outbox import OutboxPublisher

    outbox = OutboxPublisher(store, publisher)
    yield outbox
    outbox.close()


def _gateway_client(settings: Settings) -> Iterator[GatewayPublisher]:
    """Publishing into a running gateway over HTTP (``REALTIME_BROKER=gateway``, ADR 0024).

    Raises ``ConfigurationError`` when ``REALTIME_GATEWAY_URL`` is not set.
    """
    from .adapters.http_publisher import GatewayPublisher

    publisher = GatewayPublisher(
        settings.gateway_url(), settings.api_key(), timeout=settings.realtime_gateway_timeout
    )
    yield publisher
    publisher.close()


GATEWAY_FEEDS_NOTHING = (
    "REALTIME_BROKER=gateway only publishes, into a running gateway over HTTP: nothing can be "
    "read through it, and a gateway cannot be fed by another gateway's HTTP API. Serve and "
    "consume with REALTIME_BROKER=memory (one process) or kafka"
)


def _gateway_feeds_nothing() -> NoReturn:
    """What the subscriber, history and presence providers do for ``gateway``: refuse."""
    raise ConfigurationError(GATEWAY_FEEDS_NOTHING)


def _client_events(
    settings: Settings, realtime: RealtimeService, kafka: Callable[[], KafkaPublisher]
) -> Callable[[Message], Pending]:
    """How the gateway publishes client events (ADR 0016).

    On Kafka straight to the producer, never creating a topic (a client must not be able to fill
    the cluster with topics) and never through the outbox (the client is told at once when the
    broker did not take its event); with the size limit of every broadcast. On other brokers like
    any broadcast.
    """
    if settings.realtime_broker != "kafka":
        return realtime.publish
    existing = RealtimeService(
        {"kafka": lambda: kafka().existing_topics_only()},
        "kafka",
        settings.realtime_max_message_bytes,
    )
    return existing.publish


def _kafka_subscriber(config: KafkaClientConfig) -> Iterator[Subscriber]:
    from .adapters.kafka.subscriber import KafkaSubscriber

    yield KafkaSubscriber(config)


def _kafka_history(config: KafkaClientConfig) -> Iterator[History]:
    from .adapters.kafka.history import KafkaHistory

    history = KafkaHistory(config)
    yield history
    history.close()


def _limits(settings: Settings) -> Limits:
    return Limits(
        max_frame_bytes=settings.realtime_max_frame_bytes,
        max_channels=settings.realtime_max_channels,
        rate=settings.realtime_rate_limit,
        burst=settings.realtime_rate_burst,
        flood_refusals=settings.realtime_flood_refusals,
        presence_rate=settings.realtime_presence_join_rate,
        presence_burst=settings.realtime_presence_join_burst,
        queue_size=settings.realtime_queue_size,
        idle_timeout=settings.realtime_idle_timeout,
    )


def _gateway_node(settings: Settings) -> str:
    return settings.node_id(settings.realtime_ws_port)


def _feed_options(settings: Settings, node: str) -> FeedOptions:
    """Gateways always fan out: each node reads every message (design.md §3, flaw 1).

    A batch is dispatched to the sessions at once, so it is kept to half a session's queue:
    a client that keeps up is never cut off by a single burst.
    """
    return FeedOptions(
        channels=None,
        group_mode=GroupMode.FANOUT,
        batch_size=max(1, min(500, settings.realtime_queue_size // 2)),
        timeout=0.5,
        group=settings.kafka_consumer_group,
        node_id=node,
        start_at_end=True,
    )


def _kafka_presence(
    settings: Settings, config: KafkaClientConfig, node: str, epoch: str
) -> PresenceBus:
    from .adapters.kafka.presence import KafkaPresenceBus
    from .domain.topics import presence_topic

    return KafkaPresenceBus(
        config,
        presence_topic(settings.kafka_topic_prefix),
        node=node,
        epoch=epoch,
        timeout=settings.realtime_presence_timeout,
    )


def _webhooks(settings: Settings) -> WebhookQueue | None:
    """The Pusher app's webhooks to ``PUSHER_WEBHOOK_URL``, signed with its secret; None when
    no URL is set. Raises ``ConfigurationError`` for a URL without an app to sign for."""
    if settings.pusher_webhook_url is None:
        return None
    apps = settings.pusher()
    if not apps:
        raise ConfigurationError(
            "PUSHER_WEBHOOK_URL is set, but webhooks are signed with the app's secret: set "
            "PUSHER_APP_ID, PUSHER_APP_KEY and PUSHER_APP_SECRET too"
        )
    app = apps.apps[0]  # PUSHER_APP_*'s, else PUSHER_APPS' first (ADR 0036)
    return WebhookQueue(
        HttpWebhookTransport(settings.pusher_webhook_url),
        key=app.key,
        secret=app.secret,
        max_queued=settings.pusher_webhook_queue,
    )


def _gateway(
    settings: Settings,
    node: str,
    epoch: str,
    subscriber: Subscriber,
    history: History,
    presence_bus: PresenceBus,
    client_events: Callable[[Message], Pending],
    tokens: JwtTokens,
    policy: AccessPolicy,
    metrics: GatewayMetrics,
    limits: Limits,
    webhooks: WebhookQueue | None,
) -> Gateway:
    return Gateway(
        webhooks=webhooks,
        node=node,
        epoch=epoch,
        presence_bus=presence_bus,
        presence_timeout=settings.realtime_presence_timeout,
        subscriber=subscriber,
        history=history,
        publish=client_events,
        tokens=tokens,
        policy=policy,
        limits=limits,
        metrics=metrics,
        feed_options=_feed_options(settings, node),
        pusher_apps=settings.pusher(),
    )


DEMO_TOKEN_TTL = 3600.0
"""Seconds a token from ``GET /demo/token`` lives (less if ``REALTIME_MAX_TOKEN_TTL`` says so)."""


def _metrics(node: str) -> PrometheusMetrics:
    """This gateway's metrics; one view over every worker of ``tidings serve --workers``.

    ``PROMETHEUS_MULTIPROC_DIR`` is prometheus-client's own variable, read from the process
    environment when the library is imported (never from ``.env``): the supervisor sets it for
    its workers (ADR 0032), and the root asks the same place the library did.
    """
    return PrometheusMetrics(node, os.environ.get("PROMETHEUS_MULTIPROC_DIR") or None)


def _web_server(
    settings: Settings,
    gateway: Gateway,
    realtime: RealtimeService,
    demo_tokens: JwtTokens | None,
    metrics: GatewayMetrics,
) -> WebServer:
    http = GatewayHttp(
        gateway=gateway,
        publish=realtime.publish,
        api_key=settings.api_key(),
        static=bundled_file,
        broker=settings.realtime_broker,
        origins=settings.origin_policy(),
        listening_host=settings.realtime_ws_host,
        demo_tokens=demo_tokens,
        demo_token_ttl=min(DEMO_TOKEN_TTL, settings.realtime_max_token_ttl or DEMO_TOKEN_TTL),
        max_message_bytes=settings.realtime_max_message_bytes,
        pusher=_pusher_http(settings, gateway, realtime),
    )
    return WebServer(
        settings.realtime_ws_host,
        settings.realtime_ws_port,
        http,
        metrics=metrics,
        admit=UpgradeAdmission(settings.origin_policy(), settings.realtime_ws_host),
        max_frame_bytes=settings.realtime_max_frame_bytes,
        max_body_bytes=max(1_048_576, settings.realtime_max_message_bytes * 4),
        handshake_timeout=settings.realtime_handshake_timeout,
        max_connections=settings.realtime_max_connections,
        max_connections_per_address=settings.realtime_max_connections_per_ip,
        trusted_proxies=settings.trusted_proxies(),
        reuse_port=settings.realtime_reuse_port,
    )


def _pusher_http(
    settings: Settings, gateway: Gateway, realtime: RealtimeService
) -> PusherHttp | None:
    """Pusher's HTTP API for the configured apps, or None when no app is configured."""
    apps = settings.pusher()
    if not apps:
        return None
    return PusherHttp(
        apps=apps,
        gateway=gateway,
        publish=realtime.publish,
        max_data_bytes=settings.pusher_max_data_bytes,
    )


def _tokens(settings: Settings, demo_key: str) -> JwtTokens:
    """Tokens signed with ``REALTIME_SECRET``; a demo gateway also accepts its own demo tokens.

    Raises ``SecretTooShort`` for a short ``REALTIME_SECRET``.
    """
    return JwtTokens(
        settings.secret(),
        max_ttl=settings.realtime_max_token_ttl,
        also_accept=(demo_key,) if settings.realtime_demo else (),
    )


def _demo_tokens(settings: Settings, demo_key: str) -> JwtTokens | None:
    """The demo page's tokens, signed with a key of this process alone (None outside demo mode).

    The key is random per process and never derived from ``REALTIME_SECRET``, so a demo token,
    which grants every private and presence channel, is worthless on any other gateway.
    """
    if not settings.realtime_demo:
        return None
    return JwtTokens(demo_key, max_ttl=settings.realtime_max_token_ttl)


def _broker_name(settings: Settings) -> str:
    """The key of every broker ``Selector``: ``REALTIME_BROKER``, which ``Settings`` validates
    when it loads; checked again for settings built without validation (``model_construct``)."""
    name = settings.realtime_broker
    if name not in BROKERS:
        raise UnknownBroker(name, sorted(BROKERS))
    return name


class Container(containers.DeclarativeContainer):
    """Providers for every port; see the module doc."""

    settings = providers.Singleton(Settings.load)

    broker_name = providers.Callable(_broker_name, settings)
    kafka_config = providers.Singleton(kafka_client_config, settings)
    kafka_admin = providers.Resource(_kafka_admin, kafka_config)
    outbox_store = providers.Resource(_outbox_store, settings)

    memory_broker = providers.Resource(_memory_broker, settings)
    kafka_producer = providers.Resource(_kafka_producer, settings, kafka_config)
    kafka_publisher = providers.Resource(_behind_outbox, kafka_producer, outbox_store)
    kafka_subscriber = providers.Resource(_kafka_subscriber, kafka_config)
    gateway_client = providers.Resource(_gateway_client, settings)
    gateway_publisher = providers.Resource(_behind_outbox, gateway_client, outbox_store)
    gateway_feeds_nothing = providers.Callable(_gateway_feeds_nothing)

    publishers = providers.Dict(
        memory=memory_broker.provider,
        kafka=kafka_publisher.provider,
        gateway=gateway_publisher.provider,
    )
    subscriber = providers.Selector(
        broker_name,
        memory=memory_broker,
        kafka=kafka_subscriber,
        gateway=gateway_feeds_nothing,
    )

    realtime = providers.Singleton(
        RealtimeService,
        publishers=publishers,
        default_broker=settings.provided.realtime_broker,
        max_message_bytes=settings.provided.realtime_max_message_bytes,
    )

    demo_key = providers.Singleton(new_secret)
    tokens = providers.Singleton(_tokens, settings, demo_key)
    demo_tokens = providers.Singleton(_demo_tokens, settings, demo_key)

    kafka_history = providers.Resource(_kafka_history, kafka_config)
    history = providers.Selector(
        broker_name, memory=memory_broker, kafka=kafka_history, gateway=gateway_feeds_nothing
    )
    node = providers.Singleton(_gateway_node, settings)
    epoch = providers.Singleton(secrets.token_hex, 6)
    local_presence = providers.Singleton(LocalPresenceBus)
    kafka_presence = providers.Singleton(_kafka_presence, settings, kafka_config, node, epoch)
    presence_bus = providers.Selector(
        broker_name, memory=local_presence, kafka=kafka_presence, gateway=gateway_feeds_nothing
    )
    metrics = providers.Singleton(_metrics, node)
    limits = providers.Singleton(_limits, settings)
    policy = providers.Singleton(Settings.access_policy, settings)
    client_events = providers.Singleton(_client_events, settings, realtime, kafka_producer.provider)
    webhooks = providers.Singleton(_webhooks, settings)
    gateway = providers.Singleton(
        _gateway,
        settings=settings,
        node=node,
        epoch=epoch,
        subscriber=subscriber,
        history=history,
        presence_bus=presence_bus,
        client_events=client_events,
        tokens=tokens,
        policy=policy,
        metrics=metrics,
        limits=limits,
        webhooks=webhooks,
    )
    web_server = providers.Singleton(_web_server, settings, gateway, realtime, demo_tokens, metrics)

    @classmethod
    def for_settings(cls, settings: Settings) -> Container:
        """A container on ``settings``; ``shutdown_resources()`` closes the brokers it opened."""
        container = cls()
        container.settings.override(providers.Object(settings))
        return container
