"""Presence from other gateway nodes: their records in, joins and leaves out.

Each node's part of a channel's presence arrives as a snapshot and replaces what was known of
it. Nodes prove they are alive with heartbeats; one silent for longer than the presence timeout
is forgotten, and its members leave on every other node. A node that restarts comes back with a
new epoch, and whatever its previous run held is forgotten at once. Records of this node itself
are ignored: its own connections are known first-hand.

The same records carry each node's subscription counts per channel (``Occupancy``, forgotten
with the node) and requests to close a user's connections on every node, taken only while
fresh (a node reading the topic from its start skips the old ones).
"""

from __future__ import annotations

import time
from collections.abc import Callable

from ...domain import Channel, Presence, PresenceChange
from ...domain.presence import PresenceRecord
from .occupancy import Occupancy
from .presence import PresenceTracker

Announce = Callable[[Channel, PresenceChange], None]
NodeLost = Callable[[str, dict[str, PresenceChange], list[str]], None]
"""Told a forgotten node, its members' leaves per channel and the channels it left vacant."""


class ClusterPresence:
    """Implements ``PresenceSink`` for one node."""

    def __init__(
        self,
        tracker: PresenceTracker,
        announce: Announce,
        *,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        occupancy: Occupancy | None = None,
        node_lost: NodeLost | None = None,
        terminate: Callable[[str], object] | None = None,
    ) -> None:
        self._tracker = tracker
        self._announce = announce
        self._occupancy = occupancy
        self.node_lost = node_lost
        self._terminate = terminate
        self._timeout = timeout
        self._clock = clock
        self._wall = wall
        self._epochs: dict[str, str] = {}
        self._heard: dict[str, float] = {}
        self._silent: dict[str, tuple[str, dict[str, Presence]]] = {}
        """Nodes presumed dead by the timeout: their epoch and last known parts, restored if
        the same run of the node is heard from again (it was only stalled or cut off)."""

    @property
    def node(self) -> str:
        return self._tracker.node

    def nodes(self) -> dict[str, float]:
        """Other live nodes and how many seconds ago each was last heard from."""
        now = self._clock()
        return {node: now - heard for node, heard in self._heard.items()}

    def apply(self, record: PresenceRecord) -> None:
        node = record.node
        if node == self.node:
            return
        if self._epochs.get(node, record.epoch) != record.epoch:
            self.forget(node)  # it restarted: what its previous run held is gone
        silent = self._silent.pop(node, None)
        self._epochs[node] = record.epoch
        if record.leaving:
            self.forget(node)
            return
        if silent is not None and silent[0] == record.epoch:
            for channel, part in silent[1].items():  # back from a stall: its members are too
                self._announce_change(channel, self._tracker.apply_remote(node, channel, part))
        # When it was made, on this node's monotonic clock (the record carries wall time).
        made = self._clock() - max(0.0, self._wall() - record.at)
        self._heard[node] = max(self._heard.get(node, made), made)
        if record.terminate is not None:
            if self._terminate is not None and self._wall() - record.at <= self._timeout:
                self._terminate(record.terminate)
            return
        if record.count is not None:
            if self._occupancy is not None and record.channel is not None:
                self._occupancy.apply_remote(node, record.channel, record.count)
            return
        if record.channel is not None:
            change = self._tracker.apply_remote(node, record.channel, record.part())
            self._announce_change(record.channel, change)

    def expire(self) -> None:
        now = self._clock()
        for node, heard in list(self._heard.items()):
            if now - heard > self._timeout:
                epoch = self._epochs.get(node)
                parts = self._tracker.parts_of(node)
                self.forget(node)
                if epoch is not None:
                    self._silent[node] = (epoch, parts)

    def forget(self, node: str) -> None:
        self._silent.pop(node, None)
        self._heard.pop(node, None)
        self._epochs.pop(node, None)
        changes = self._tracker.drop_node(node)
        for channel, change in changes.items():
            self._announce_change(channel, change)
        vacated = self._occupancy.drop_node(node) if self._occupancy is not None else []
        if self.node_lost is not None and (changes or vacated):
            self.node_lost(node, changes, vacated)

    def _announce_change(self, channel: str, change: PresenceChange) -> None:
        if change:
            self._announce(Channel(channel), change)
