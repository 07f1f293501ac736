"""Subscriptions per channel across the cluster: whether a channel is occupied, and by how many.

This node counts its own subscriptions first-hand (the hub's table). Every other node tells its
count of each channel it holds, on the presence bus (``PresenceRecord.subscriptions``: a new
count after every change, again now and then, and 0 when it holds none); a node that goes silent
is forgotten with its presence (``ClusterPresence``), and so are its counts. A channel's count is
the sum (ADR 0037).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable


class Occupancy:
    """Cluster-wide subscription counts: this node's from ``local``, the others' from records."""

    def __init__(self, local: Callable[[str], int], local_channels: Callable[[], Iterable[str]]):
        self._local = local
        self._local_channels = local_channels
        self._remote: dict[str, dict[str, int]] = {}
        """channel -> node -> that node's subscriptions on it (never 0)."""

    def count(self, channel: str) -> int:
        return self._local(channel) + self.remote_count(channel)

    def remote_count(self, channel: str) -> int:
        return sum(self._remote.get(channel, {}).values())

    def occupied(self) -> dict[str, int]:
        """Every channel with at least one subscription somewhere, and its count."""
        names = set(self._local_channels()) | set(self._remote)
        counts = {name: self.count(name) for name in names}
        return {name: count for name, count in counts.items() if count}

    def apply_remote(self, node: str, channel: str, count: int) -> bool:
        """Take ``node``'s count of ``channel``; True when the channel became vacant by it."""
        before = self.count(channel)
        nodes = self._remote.setdefault(channel, {})
        if count > 0:
            nodes[node] = count
        else:
            nodes.pop(node, None)
        if not nodes:
            del self._remote[channel]
        return before > 0 and self.count(channel) == 0

    def drop_node(self, node: str) -> list[str]:
        """Forget ``node``'s counts (it died or restarted); the channels left vacant by it."""
        vacated = []
        for channel in [name for name, nodes in self._remote.items() if node in nodes]:
            if self.apply_remote(node, channel, 0):
                vacated.append(channel)
        return vacated
