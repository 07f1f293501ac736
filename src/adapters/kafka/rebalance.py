"""A consumer group's rebalances, for a feed: which assignor splits the partitions, and what is
committed when partitions are taken away (ADR 0025).

kafka-python 3 runs a rebalance inside ``KafkaConsumer.poll`` (the feed's consumer thread waits in
it) and calls the listener on its own IO thread, the one that also sends heartbeats; the
partitions go to another member only once the listener has returned. So ``CommitOnRevoke`` has
there, and only there, the chance to commit what the feed has written: it fences the revoked
partitions (records read but not written are dropped, see ``offsets.FeedOffsets.revoke``), waits
a bounded time for the batch being written, and commits. A partition the same rebalance gives back
(eager assignors give every partition back or away) resumes where it was written up to, not where
the consumer had read to.

The listener must not call kafka-python's blocking API on the IO thread (it raises there); the
commit is ``commit_async``'s future, awaited, which kafka-python's own loop resolves.
"""

from __future__ import annotations

import logging
import re

import kafka
from kafka import AsyncConsumerRebalanceListener, KafkaConsumer, TopicPartition
from kafka.coordinator.assignors.cooperative_sticky import CooperativeStickyAssignor
from kafka.coordinator.assignors.range import RangePartitionAssignor
from kafka.coordinator.assignors.roundrobin import RoundRobinPartitionAssignor
from kafka.coordinator.assignors.sticky.sticky_assignor import StickyPartitionAssignor
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from ...domain.errors import ConfigurationError
from .offsets import FeedOffsets

log = logging.getLogger("tidings.kafka.subscriber")

ASSIGNORS: dict[str, type] = {
    "cooperative-sticky": CooperativeStickyAssignor,
    "roundrobin": RoundRobinPartitionAssignor,
    "range": RangePartitionAssignor,
    "sticky": StickyPartitionAssignor,
}
"""kafka-python's assignors by the names Kafka gives them (``KAFKA_CONSUMER_ASSIGNOR``); the same
four ship in every kafka-python 3 tidings admits."""

COOPERATIVE = frozenset({"cooperative-sticky"})
"""Assignors of the cooperative protocol (KIP-429); the others are eager."""

REVOKE_WAIT = 10.0
"""Seconds a revocation waits for the batch being written (it blocks kafka-python's IO thread,
heartbeats included, so it stays well under the 45 s session timeout). Writing a batch takes
milliseconds; only a reader that stops reading the output holds it that long."""


EAGER_SINCE = (3, 0, 9)
"""The first kafka-python whose eager rebalances let a consumer read on the partitions it keeps:
before it, a consumer with a rebalance listener (this module's) stops reading them for good."""


def kafka_python_version() -> tuple[int, ...]:
    """The installed kafka-python's version as numbers (``3.0.12`` -> (3, 0, 12))."""
    return tuple(int(part) for part in re.findall(r"\d+", kafka.__version__)[:3])


def check_assignor(name: str) -> None:
    """Refuse an assignor tidings cannot use with the installed kafka-python, naming why: an
    unknown name, or an eager one before ``EAGER_SINCE``. The one place this version is checked."""
    partition_assignor(name)
    installed = kafka_python_version()
    if name not in COOPERATIVE and installed < EAGER_SINCE:
        raise ConfigurationError(
            f"KAFKA_CONSUMER_ASSIGNOR: {name} needs kafka-python "
            f"{'.'.join(map(str, EAGER_SINCE))} or newer (this is {kafka.__version__}, whose "
            "eager rebalances stop a consumer reading the partitions it keeps); use "
            f"{next(iter(COOPERATIVE))} or upgrade kafka-python"
        )


def partition_assignor(name: str) -> type:
    """The kafka-python assignor class called ``name``; a ``ConfigurationError`` names the
    choices."""
    try:
        return ASSIGNORS[name]
    except KeyError:
        known = ", ".join(ASSIGNORS)
        raise ConfigurationError(
            f"KAFKA_CONSUMER_ASSIGNOR: unknown assignor {name!r}; known assignors: {known}"
        ) from None


class CommitOnRevoke(AsyncConsumerRebalanceListener):  # type: ignore[misc]
    """Commits what a feed wrote of the partitions a rebalance takes away (see the module doc)."""

    def __init__(
        self,
        consumer: KafkaConsumer,
        offsets: FeedOffsets,
        *,
        assignor: str,
        wait: float = REVOKE_WAIT,
    ) -> None:
        self._consumer = consumer
        self._offsets = offsets
        self._wait = wait
        self._eager = assignor not in COOPERATIVE
        """Eager assignors revoke everything and give some back in the same rebalance; a
        cooperative one revokes only what moves, and never gives it back in the same rebalance
        (a later one may, after another member read on: no resuming from here then)."""
        self._resume: dict[TopicPartition, int] = {}
        """Where the partitions of the last revocation were written up to, for this rebalance's
        assignment (eager assignors only): forgotten once it is made."""

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        if not revoked:
            return
        found = self._offsets.revoke(revoked, self._wait)
        self._resume = found.written if self._eager else {}
        if not found.in_time:
            log.warning(
                "a batch was still being written %.0fs into a rebalance; its messages of %d "
                "revoked partition(s) may be printed again by their next owner",
                self._wait,
                len(revoked),
            )
        if not found.written:
            return
        offsets = {tp: OffsetAndMetadata(offset, "", -1) for tp, offset in found.written.items()}
        try:
            await self._consumer.commit_async(offsets)
        except KafkaError as exc:
            log.warning(
                "commit of revoked partitions failed (their last messages may come again): %s", exc
            )

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        resume, self._resume = self._resume, {}
        for tp in assigned:
            if tp in resume:
                self._consumer.seek(tp, resume[tp])

    async def on_partitions_lost(self, lost: set[TopicPartition]) -> None:
        """Evicted from the group: the partitions are another member's already, so nothing can
        be committed; what was read and not written is dropped all the same."""
        self._offsets.revoke(lost, 0)
        self._resume = {}
