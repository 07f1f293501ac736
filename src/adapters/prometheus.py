"""Gateway metrics in the Prometheus text format (prometheus-client), one registry per gateway.

Under ``tidings serve --workers`` (ADR 0032) the workers share one view instead: prometheus-client's
multiprocess mode, where every process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``
and ``/metrics`` of whichever worker answers reads them all (counters and the connection gauges
summed over the workers, ``tidings_node_info`` one series per live worker).
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead


class PrometheusMetrics:
    """Implements ``GatewayMetrics``; its own registry, so several gateways can share a process.

    ``multiprocess_dir``: the ``PROMETHEUS_MULTIPROC_DIR`` this process was started with, whose
    files ``render`` sums over every worker (see the module doc); None: this gateway alone.
    """

    def __init__(self, node: str, multiprocess_dir: str | None = None) -> None:
        self._multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        labels = {"node": node}
        self._connections = Gauge(
            "tidings_connections",
            "Open client connections",
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
            "Error frames sent to clients, by protocol code",
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
        if self._multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        return generate_latest(every_worker), CONTENT_TYPE_LATEST


def forget_process(multiprocess_dir: str, pid: int) -> None:
    """Drop the live gauges of a worker that exited (its counters stay in the sums)."""
    mark_process_dead(pid, multiprocess_dir)  # type: ignore[no-untyped-call]
