"""Gateway metrics in the Prometheus text format (prometheus-client), one registry per gateway.

Names follow Prometheus' conventions (``tidings_`` prefix, base units with their suffix, counters
end in ``_total``); ``docs/observability.md`` lists every family and the dashboard built on them.
Every gauge names how prometheus-client's multiprocess mode adds up several worker processes
(``multiprocess_mode``): connections are summed over the live workers, the broker's lag is the
worst worker's, the broker counts as connected only when every worker's feed is.

Under ``tidings serve --workers`` (ADR 0032) the workers share one view: prometheus-client's
multiprocess mode, where every process writes its values to files in ``PROMETHEUS_MULTIPROC_DIR``
and ``/metrics`` of whichever worker answers reads them all (counters and the connection gauges
summed over the workers, ``tidings_node_info`` one series per live worker). The process figures
(CPU, memory, descriptors) are each worker's own, read from ``/proc`` for every live worker and
told apart by a ``node`` label.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

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
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

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
    """Implements ``GatewayMetrics``; its own registry, so several gateways can share a process.

    ``multiprocess_dir``: the ``PROMETHEUS_MULTIPROC_DIR`` this process was started with, whose
    files ``render`` sums over every worker (see the module doc); None: this gateway alone.
    """

    def __init__(self, node: str, multiprocess_dir: str | None = None) -> None:
        self._multiprocess_dir = multiprocess_dir
        self.registry = new_registry()
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
        if self._multiprocess_dir is None:
            return generate_latest(self.registry), CONTENT_TYPE_LATEST
        every_worker = CollectorRegistry()
        MultiProcessCollector(every_worker, path=self._multiprocess_dir)  # type: ignore[no-untyped-call]
        workers = [
            (sample.labels["node"], int(sample.labels["pid"]))
            for family in every_worker.collect()
            if family.name == "tidings_node_info"
            for sample in family.samples
        ]
        every_worker.register(_WorkerProcesses(workers))
        PlatformCollector(registry=every_worker)
        return generate_latest(every_worker), CONTENT_TYPE_LATEST


class _WorkerProcesses:
    """The process figures of every live worker (``node``, ``pid``), one series per worker under
    prometheus-client's own ``process_*`` names with a ``node`` label (a collector)."""

    def __init__(self, workers: Iterable[tuple[str, int]]) -> None:
        self._workers = tuple(workers)

    def collect(self) -> Iterable[Metric]:
        families: dict[str, Metric] = {}
        for node, pid in self._workers:
            # A worker gone since the files were read yields nothing (its /proc entry is gone).
            reader = ProcessCollector(pid=functools.partial(int, pid), registry=None)
            for family in reader.collect():
                merged = families.setdefault(
                    family.name, Metric(family.name, family.documentation, family.type)
                )
                for sample in family.samples:
                    merged.add_sample(sample.name, {**sample.labels, "node": node}, sample.value)
        return families.values()


def forget_process(multiprocess_dir: str, pid: int) -> None:
    """Drop the live gauges of a worker that exited (its counters stay in the sums)."""
    mark_process_dead(pid, multiprocess_dir)  # type: ignore[no-untyped-call]
