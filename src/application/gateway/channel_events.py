"""Channel occupancy and presence as the cluster tells it: counts out, webhooks once per cluster.

After each change of this node's subscriptions on a channel, the new count goes on the presence
bus (the other nodes' ``Occupancy`` sums them). Webhooks (ADR 0037) are sent by the node whose
own change caused them: ``channel_occupied`` when this node's count goes from 0 while no other
node holds the channel, ``channel_vacated`` when it drops to 0 while none other does,
``member_added`` / ``member_removed`` when a local join or leave changes the cluster's member
list. What a dead node took with it (its counts and members, forgotten after the presence
timeout) is reported by one node alone: the live node with the smallest id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable

from ...domain import Channel, Message, PresenceChange
from ...domain.presence import PresenceRecord
from ...domain.pusher import webhooks as hooks
from ...ports import Webhooks
from .occupancy import Occupancy


class ChannelEvents:
    """Counts this node tells the cluster, and the webhooks this node is the one to send."""

    def __init__(
        self,
        *,
        node: str,
        epoch: Callable[[], str],
        occupancy: Occupancy,
        publish: Callable[[PresenceRecord], None],
        live_nodes: Callable[[], Iterable[str]],
        webhooks: Webhooks | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._node = node
        self._epoch = epoch
        self._occupancy = occupancy
        self._publish = publish
        self._live_nodes = live_nodes
        self._webhooks = webhooks
        self._wall = wall

    def count_changed(self, channel: str, before: int, after: int) -> None:
        """This node's subscriptions on ``channel`` went from ``before`` to ``after``."""
        self._publish(
            PresenceRecord.subscriptions(self._node, self._epoch(), self._wall(), channel, after)
        )
        if self._webhooks is None or self._occupancy.remote_count(channel):
            return
        if before == 0 and after > 0:
            self._webhooks.emit(hooks.channel_occupied(channel))
        elif before > 0 and after == 0:
            self._webhooks.emit(hooks.channel_vacated(channel))

    def presence_changed(self, channel: Channel, change: PresenceChange) -> None:
        """A local join or leave changed the cluster's members of ``channel`` by ``change``."""
        if self._webhooks is None:
            return
        for member in change.joined:
            self._webhooks.emit(hooks.member_added(channel.name, member.user_id))
        for member in change.left:
            self._webhooks.emit(hooks.member_removed(channel.name, member.user_id))

    def client_event(
        self, channel: str, event: str, data: str, socket_id: str, user_id: str | None = None
    ) -> None:
        """A client sent ``event`` on ``channel`` (a webhook; ``user_id`` on presence
        channels). The Pusher endpoint calls this for each client event it publishes."""
        if self._webhooks is not None:
            self._webhooks.emit(hooks.client_event(channel, event, data, socket_id, user_id))

    def client_message(self, message: Message) -> None:
        """A tidings client's event, published as ``message``: its webhook (data that is not
        a string is sent JSON-encoded, as Pusher's ``data`` always is)."""
        if self._webhooks is None or message.exclude is None:
            return
        data = message.data
        self.client_event(
            message.channel.name,
            message.event,
            data if isinstance(data, str) else json.dumps(data, separators=(",", ":")),
            message.exclude,
            message.user_id if message.channel.is_presence else None,
        )

    def node_lost(self, node: str, presence: dict[str, PresenceChange], vacated: list[str]) -> None:
        """``node`` was forgotten: its members left ``presence``, its counts ``vacated``
        channels. Reported by the live node with the smallest id alone."""
        if self._webhooks is None or not self.reports_for_the_dead():
            return
        for channel, change in presence.items():
            self.presence_changed(Channel(channel), change)
        for channel in vacated:
            self._webhooks.emit(hooks.channel_vacated(channel))

    def reports_for_the_dead(self) -> bool:
        return all(self._node <= other for other in self._live_nodes())
