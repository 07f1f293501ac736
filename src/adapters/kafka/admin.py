"""Topic administration: create on first use, cluster identity, offsets and lag.

Only this module creates topics (``ensure_topic``), and only for the server's own publishing and
commands: every Kafka client tidings opens asks the broker not to create a topic on a metadata
request (``NO_AUTO_CREATE``), so no client-driven path can make one (ADR 0016).

A ``KafkaAdmin`` is owned by one thread (kafka-python's clients are not shared across threads);
each adapter that needs one makes its own. Its admin client is created lazily and dropped after a
connection failure, so a broker that comes back is picked up on the next call.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from typing import Any

import attrs
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaError, TopicAlreadyExistsError

from .common import unavailable
from .settings import NO_AUTO_CREATE, KafkaClientConfig


@attrs.frozen
class PartitionOffsets:
    topic: str
    partition: int
    start: int
    end: int


@attrs.frozen
class PartitionLag:
    topic: str
    partition: int
    committed: int | None
    end: int

    @property
    def lag(self) -> int:
        return self.end - (self.committed if self.committed is not None else 0)


class KafkaAdmin:
    def __init__(
        self,
        brokers: Sequence[str],
        *,
        partitions: int = 1,
        replication_factor: int = 1,
        timeout: float = 10.0,
        client_settings: dict[str, Any] | None = None,
    ) -> None:
        self.brokers = list(brokers)
        self._partitions = partitions
        self._replication = replication_factor
        self._timeout_ms = int(timeout * 1000)
        self._client_settings = client_settings or {}
        self._admin: KafkaAdminClient | None = None
        self._known: set[str] = set()
        self._cluster_id: str | None = None
        self._lock = threading.Lock()

    def renewed(self) -> KafkaAdmin:
        """A new admin for the same cluster and settings, sharing nothing with this one (for a
        forked child: this one's client and lock are the parent's)."""
        return KafkaAdmin(
            self.brokers,
            partitions=self._partitions,
            replication_factor=self._replication,
            timeout=self._timeout_ms / 1000,
            client_settings=self._client_settings,
        )

    @classmethod
    def for_config(cls, config: KafkaClientConfig, *, producer: bool = False) -> KafkaAdmin:
        """An admin for ``config``'s cluster, with the security settings of its consumers (or
        of its producer, for the publisher's own admin)."""
        return cls(
            config.brokers,
            partitions=config.partitions,
            replication_factor=config.replication_factor,
            timeout=config.timeout,
            client_settings=config.security(producer=producer),
        )

    def _client(self) -> KafkaAdminClient:
        if self._admin is None:
            self._admin = KafkaAdminClient(
                bootstrap_servers=self.brokers,
                request_timeout_ms=self._timeout_ms,
                bootstrap_timeout_ms=self._timeout_ms,
                **self._client_settings,
            )
        return self._admin

    def _call(self, action: str, *args: Any, **kwargs: Any) -> Any:
        with self._lock:
            try:
                return getattr(self._client(), action)(*args, **kwargs)
            except TopicAlreadyExistsError:
                raise
            except (KafkaError, OSError) as exc:
                self._drop()
                raise unavailable(self.brokers, exc) from exc

    def _drop(self) -> None:
        if self._admin is not None:
            try:
                self._admin.close()
            except Exception:
                pass
            self._admin = None

    def ping(self) -> None:
        """A real request to the cluster; raises ``BrokerUnavailable`` when it does not answer."""
        self._call("describe_cluster")

    def cluster_id(self) -> str:
        if self._cluster_id is None:
            self._cluster_id = str(self._call("describe_cluster")["cluster_id"])
        return self._cluster_id

    def ensure_topic(self, topic: str, *, compacted: bool = False) -> bool:
        """Create ``topic`` unless it exists; True when this call created it. Remembered, so a
        known topic costs nothing."""
        if topic in self._known:
            return False
        configs = {"cleanup.policy": "compact"} if compacted else {}
        try:
            self._call(
                "create_topics",
                [
                    NewTopic(
                        topic,
                        self._partitions if not compacted else 1,
                        self._replication,
                        topic_configs=configs,
                    )
                ],
            )
        except TopicAlreadyExistsError:
            self._known.add(topic)
            return False
        self._known.add(topic)
        return True

    def exists(self, topic: str) -> bool:
        """Whether ``topic`` exists, asked without creating it (the admin client's metadata
        requests never ask for auto-creation). A topic found is remembered; one missing is asked
        about again next time, since the server may create it at any moment."""
        if topic in self._known:
            return True
        if topic not in self.partition_counts([topic]):
            return False
        self._known.add(topic)
        return True

    def topics(self) -> list[str]:
        return sorted(self._call("list_topics"))

    def partition_counts(self, topics: Iterable[str]) -> dict[str, int]:
        """Partitions of each of ``topics`` that exists (missing ones are left out)."""
        described = self._call("describe_topics", list(topics))
        return {
            entry["name"]: len(entry["partitions"])
            for entry in described
            if not entry.get("error_code")
        }

    def offsets(self, topics: Iterable[str]) -> list[PartitionOffsets]:
        """Start and end offsets of every partition of ``topics``."""
        with self._offset_reader() as reader:
            partitions = [
                TopicPartition(topic, partition)
                for topic in topics
                for partition in sorted(reader.partitions_for_topic(topic) or ())
            ]
            if not partitions:
                return []
            starts = reader.beginning_offsets(partitions, timeout_ms=self._timeout_ms)
            ends = reader.end_offsets(partitions, timeout_ms=self._timeout_ms)
        return [PartitionOffsets(tp.topic, tp.partition, starts[tp], ends[tp]) for tp in partitions]

    def lag(self, group: str, topics: Iterable[str] | None = None) -> list[PartitionLag]:
        """Committed offset, end offset and lag of ``group`` on each partition it has committed."""
        committed = self._call("list_group_offsets", group).get(group, {})
        wanted = set(topics) if topics is not None else None
        partitions = [tp for tp in committed if wanted is None or tp.topic in wanted]
        if not partitions:
            return []
        with self._offset_reader() as reader:
            ends = reader.end_offsets(partitions, timeout_ms=self._timeout_ms)
        return sorted(
            (
                PartitionLag(tp.topic, tp.partition, committed[tp].offset, ends[tp])
                for tp in partitions
            ),
            key=lambda lag: (lag.topic, lag.partition),
        )

    def groups(self) -> list[str]:
        return sorted(str(group["group_id"]) for group in self._call("list_groups"))

    def _offset_reader(self) -> _Reader:
        return _Reader(self.brokers, self._timeout_ms, self._client_settings)

    def close(self) -> None:
        with self._lock:
            self._drop()


class _Reader:
    """A short-lived group-less consumer for offset look-ups."""

    def __init__(self, brokers: list[str], timeout_ms: int, settings: dict[str, Any]) -> None:
        self._brokers = brokers
        self._timeout_ms = timeout_ms
        self._settings = settings
        self._consumer: KafkaConsumer | None = None

    def __enter__(self) -> KafkaConsumer:
        try:
            self._consumer = KafkaConsumer(
                bootstrap_servers=self._brokers,
                group_id=None,
                enable_auto_commit=False,
                request_timeout_ms=self._timeout_ms,
                bootstrap_timeout_ms=self._timeout_ms,
                **NO_AUTO_CREATE,
                **self._settings,
            )
        except (KafkaError, OSError) as exc:
            raise unavailable(self._brokers, exc) from exc
        return self._consumer

    def __exit__(self, *exc_info: object) -> None:
        if self._consumer is not None:
            self._consumer.close(autocommit=False)
