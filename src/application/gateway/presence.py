"""Presence across the cluster: this node's members, other nodes' snapshots, and their merge.

Each node owns the connections it holds. Other nodes' parts arrive as snapshots (see the Kafka
presence adapter) and replace what was known of that node; a node that stops sending is dropped
after a timeout. The view of a channel is the merge of all parts, and every change is reported as
the diff of the view before and after, so joins and leaves are exact whichever node caused them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

from ...domain import Channel, ConnectionRef, Member, Presence, PresenceChange
from ...domain.message import JSON


class PresenceTracker:
    """Presence views of every presence channel this node knows about."""

    def __init__(self, node: str, on_local_change: Callable[[str, Presence], None] | None = None):
        self.node = node
        self._on_local_change = on_local_change
        """Told this node's new part of a channel after every local join or leave."""
        self._local: dict[str, Presence] = {}
        self._remote: dict[str, dict[str, Presence]] = {}
        """channel -> node -> that node's part."""

    def view(self, channel: str) -> Presence:
        view = self._local.get(channel, Presence())
        for part in self._remote.get(channel, {}).values():
            view = view.merge(part)
        return view

    def members(self, channel: Channel) -> list[Member]:
        return sorted(self.view(channel.name).members.values(), key=lambda m: m.user_id)

    def local(self, channel: str) -> Presence:
        return self._local.get(channel, Presence())

    def _change_local(self, channel: str, after: Presence) -> PresenceChange:
        before = self.view(channel)
        if len(after):
            self._local[channel] = after
        else:
            self._local.pop(channel, None)
        if self._on_local_change is not None:
            self._on_local_change(channel, after)
        return before.diff(self.view(channel))

    def join(
        self, channel: Channel, ref: ConnectionRef, user_id: str, info: JSON
    ) -> PresenceChange:
        return self._change_local(channel.name, self.local(channel.name).join(user_id, ref, info))

    def leave(self, channel: Channel, ref: ConnectionRef) -> PresenceChange:
        return self._change_local(channel.name, self.local(channel.name).leave(ref))

    def apply_remote(self, node: str, channel: str, part: Presence) -> PresenceChange:
        """Replace what is known of ``node``'s members on ``channel`` with ``part``."""
        if node == self.node:
            return PresenceChange()
        before = self.view(channel)
        parts = self._remote.setdefault(channel, {})
        if len(part):
            parts[node] = part.only_node(node)
        else:
            parts.pop(node, None)
            if not parts:
                del self._remote[channel]
        return before.diff(self.view(channel))

    def drop_node(self, node: str) -> dict[str, PresenceChange]:
        """Forget every member of ``node`` (it died or restarted); the changes per channel."""
        changes: dict[str, PresenceChange] = {}
        for channel in [name for name, parts in self._remote.items() if node in parts]:
            change = self.apply_remote(node, channel, Presence())
            if change:
                changes[channel] = change
        return changes

    def parts_of(self, node: str) -> dict[str, Presence]:
        """What ``node`` holds, per channel (its last snapshots)."""
        return {channel: parts[node] for channel, parts in self._remote.items() if node in parts}

    def channels(self) -> Iterable[str]:
        return set(self._local) | set(self._remote)
