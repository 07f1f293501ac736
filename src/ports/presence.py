"""Presence across gateway nodes: how a node tells the others who it holds, and hears theirs."""

from __future__ import annotations

from typing import Protocol

from ..domain.presence import PresenceRecord


class Started(Protocol):
    """How a task that takes a while to get going says it is ready (``trio.TaskStatus``)."""

    def started(self, value: None = None) -> None: ...


class PresenceSink(Protocol):
    """What the gateway does with other nodes' records."""

    def apply(self, record: PresenceRecord) -> None: ...

    def expire(self) -> None:
        """Forget nodes that have been silent for longer than the presence timeout."""
        ...


class PresenceBus(Protocol):
    """Carries presence records between gateway nodes (a compacted Kafka topic, or nothing)."""

    async def run(self, sink: PresenceSink, *, task_status: Started = ...) -> None:
        """Rebuild the cluster's presence, report ``started``, then exchange records until
        cancelled; on the way out, tell the others this node is leaving."""
        ...

    def publish(self, record: PresenceRecord) -> None:
        """Queue this node's latest record for its key; never blocks."""
        ...
