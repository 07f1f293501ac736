"""Gateway metrics in the Prometheus text format (prometheus-client), one registry per gateway.

Names follow Prometheus' conventions (``tidings_`` prefix, base units with their suffix, counters
end in ``_total``); ``docs/observability.md`` lists every family and the dashboard built on them.
Every gauge names how prometheus-client's multiprocess mode adds up several worker processes
(``multiprocess_mode``): connections are summed over the live workers, the broker's lag is the
worst worker's, the broker counts as connected only when every worker's feed is.
"""

from __future__ import annotations

from collections.abc import Sequence

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    GCCollector,
    Histogram,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip
"""Seconds from publish to send: a millisecond on one machine to a minute behind a slow broker."""


def new_registry() -> CollectorRegistry:
    """The one place a gateway's registry is made: its own (several gateways may share a
    process, in tests), with the process' CPU, memory, descriptors, Python and GC figures."""
    registry = CollectorRegistry(auto_describe=True)
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class PrometheusMetrics:
    """Implements ``GatewayMetrics``; its own registry, so several gateways can share a process."""

    def __init__(self, node: str, registry: CollectorRegistry | None = None) -> None:
        self.registry = new_registry() if registry is None else registry
        labels = {"node": node}
        self._connections = Gauge(
            "tidings_connections",
            "Open client connections (WebSocket and event streams)",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._connections_total = Counter(
            "tidings_connections_opened", "Client connections accepted", registry=self.registry
        )
        self._subscriptions = Gauge(
            "tidings_subscriptions",
            "Channel subscriptions held by clients",
            registry=self.registry,
            multiprocess_mode="livesum",
        )
        self._messages_in = Counter(
            "tidings_messages_in", "Messages received from the broker", registry=self.registry
        )
        self._messages_out = Counter(
            "tidings_messages_out", "Event frames queued to clients", registry=self.registry
        )
        self._refusals = Counter(
            "tidings_refusals",
            "Error frames sent to clients and event-stream requests refused, by protocol code",
            ["code"],
            registry=self.registry,
        )
        self._overflows = Counter(
            "tidings_queue_overflows",
            "Clients cut off because their outbound queue filled (slow consumers)",
            registry=self.registry,
        )
        self._refused_connections = Counter(
            "tidings_connections_refused",
            "Connections turned away before they were served, by reason",
            ["reason"],
            registry=self.registry,
        )
        self._failed_connections = Counter(
            "tidings_connections_failed",
            "Connections closed with 1011 because serving them raised an unexpected error",
            registry=self.registry,
        )
        self._dropped = Counter(
            "tidings_records_dropped",
            "Broker records delivered to nobody, by reason",
            ["reason"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "tidings_publish_to_send_seconds",
            "Seconds from a message's publish (its envelope's timestamp) to its frames being "
            "written to its clients' sockets (or queued behind a full one); once per message",
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._lag = Gauge(
            "tidings_broker_lag_messages",
            "Messages in the broker this gateway has not yet handed over (last known)",
            registry=self.registry,
            multiprocess_mode="livemax",
        )
        self._broker_connected = Gauge(
            "tidings_broker_connected",
            "1 while the gateway's broker feed is connected, else 0",
            registry=self.registry,
            multiprocess_mode="livemin",
        )
        self._disconnects = Counter(
            "tidings_disconnects",
            "Client connections ended, by WebSocket close code (event streams too)",
            ["code"],
            registry=self.registry,
        )
        info = Gauge(
            "tidings_node_info",
            "This gateway node",
            ["node"],
            registry=self.registry,
            multiprocess_mode="liveall",
        )
        info.labels(**labels).set(1)

    def connection_opened(self) -> None:
        self._connections.inc()
        self._connections_total.inc()

    def connection_closed(self) -> None:
        self._connections.dec()

    def subscribed(self) -> None:
        self._subscriptions.inc()

    def unsubscribed(self, count: int = 1) -> None:
        self._subscriptions.dec(count)

    def messages_in(self, count: int) -> None:
        self._messages_in.inc(count)

    def messages_out(self, count: int) -> None:
        self._messages_out.inc(count)

    def sent(self, published_at: Sequence[float], now: float) -> None:
        observe = self._latency.observe
        for stamp in published_at:
            # A publisher's clock ahead of this host's makes a negative figure: count it as 0.
            observe(now - stamp if now > stamp else 0.0)

    def broker_status(self, connected: bool, lag: int | None) -> None:
        self._broker_connected.set(1 if connected else 0)
        if lag is not None:
            self._lag.set(lag)

    def disconnected(self, code: int) -> None:
        self._disconnects.labels(code=str(int(code))).inc()

    def refused(self, code: int) -> None:
        self._refusals.labels(code=str(int(code))).inc()

    def queue_overflow(self) -> None:
        self._overflows.inc()

    def connection_refused(self, reason: str) -> None:
        self._refused_connections.labels(reason=reason).inc()

    def connection_failed(self) -> None:
        self._failed_connections.inc()

    def records_dropped(self, reason: str, count: int = 1) -> None:
        self._dropped.labels(reason=reason).inc(count)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
