"""The gateway: the broker side, and the life of each client connection around its protocol.

Along Centrifuge's lines the gateway is in parts: the broker side is here (``Gateway.run`` pumps
the broker feed into the hub, and commits each batch only after it has been handed to the local
sessions: at-least-once, the sessions' positions drop the duplicates a redelivery brings); the
hub fans out (``hub``); each connection's protocol is ``client.ClientProtocol``; each
connection's outbox is ``writer.Outbox``. ``Gateway.handle`` serves one client connection from
token check to close. Both live in nurseries owned by the caller, so shutting down is cancelling
a scope.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable

import attrs
import trio

from ...domain import AccessPolicy, Channel, Message, Position, Presence
from ...domain.disconnects import close_reason
from ...domain.presence import PresenceRecord
from ...domain.protocol import CloseCode
from ...ports import (
    ClientConnection,
    Feed,
    FeedOptions,
    FeedStatus,
    GatewayMetrics,
    History,
    Pending,
    PresenceBus,
    Subscriber,
    TokenVerifier,
)
from .client import ClientProtocol
from .cluster import ClusterPresence
from .hub import Hub
from .limits import Limits
from .presence import PresenceTracker
from .session import Session
from .writer import Spawn

log = logging.getLogger("tidings.gateway")


@attrs.define
class FeedHealth:
    """Counts of what the broker feed delivered, for ``/healthz``."""

    batches: int = 0
    messages: int = 0


class Gateway:
    def __init__(
        self,
        *,
        node: str,
        subscriber: Subscriber,
        history: History | None,
        publish: Callable[[Message], Pending],
        tokens: TokenVerifier,
        policy: AccessPolicy,
        limits: Limits,
        metrics: GatewayMetrics,
        feed_options: FeedOptions,
        presence_bus: PresenceBus,
        presence_timeout: float = 15.0,
        epoch: str = "",
    ) -> None:
        self.node = node
        self.epoch = epoch or secrets.token_hex(6)
        self.hub = Hub(PresenceTracker(node, self._local_presence_changed))
        self.cluster = ClusterPresence(
            self.hub.presence, self.hub.announce, timeout=presence_timeout
        )
        self._presence_bus = presence_bus
        self.limits = limits
        self.metrics = metrics
        self.health = FeedHealth()
        self._subscriber = subscriber
        self._feed_options = feed_options
        self._feed: Feed | None = None
        self._feed_open = trio.Event()
        self._stopping = False
        self._drained = trio.Event()
        self._spawn_writer: Spawn | None = None
        """Starts a session's writer task in the gateway's nursery (one bound method for all)."""
        self._on_cut = self._session_cut  # likewise shared by every session
        self.clients = ClientProtocol(
            hub=self.hub,
            limits=limits,
            metrics=metrics,
            tokens=tokens,
            policy=policy,
            history=history,
            publish=publish,
            frontier=self._frontier,
        )
        """Each connection's protocol (shared by all: it holds no per-connection state)."""

    # -- The broker side ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Rebuild cluster presence, then pump the broker feed into the hub until ``stop``.

        The batch in hand when ``stop`` is called is dispatched and committed first.
        """
        async with trio.open_nursery() as nursery:
            self._spawn_writer = nursery.start_soon  # sessions' writers, owned by the gateway
            await nursery.start(self._presence_bus.run, self.cluster)
            await self._pump(task_status)
            nursery.cancel_scope.cancel()

    def _local_presence_changed(self, channel: str, part: Presence) -> None:
        self._presence_bus.publish(
            PresenceRecord.snapshot(self.node, self.epoch, time.time(), channel, part)
        )

    async def _pump(self, task_status: trio.TaskStatus[None]) -> None:
        async with self._subscriber.open_feed(self._feed_options) as feed:
            self._feed = feed
            self._feed_open.set()
            task_status.started()
            misplaced = undecodable = 0  # records the feed dropped, as counted so far
            async for batch in feed.batches():
                if batch:
                    self.metrics.messages_in(len(batch))
                    self.metrics.messages_out(self.hub.dispatch(batch))
                    self.health.batches += 1
                    self.health.messages += len(batch)
                    await feed.commit()
                status = feed.status()
                if status.misplaced != misplaced:
                    self.metrics.records_dropped("wrong_topic", status.misplaced - misplaced)
                    misplaced = status.misplaced
                if status.undecodable != undecodable:
                    self.metrics.records_dropped("undecodable", status.undecodable - undecodable)
                    undecodable = status.undecodable
                if self._stopping:
                    break

    def _frontier(self, channel: Channel) -> Position:
        """Where the channel's messages stand now in the feed (clients subscribe from there)."""
        assert self._feed is not None, "sessions exist only once the feed is open"
        return self._feed.frontier(channel)

    def feed_status(self) -> FeedStatus:
        if self._feed is None:
            return FeedStatus(connected=False, error="the broker feed is not open yet")
        return self._feed.status()

    def stop(self) -> None:
        """Finish the batch in hand, commit it, and end ``run``; close every session (1001)."""
        self._stopping = True
        for session in list(self.hub.sessions.values()):
            session.cut(CloseCode.GOING_AWAY, close_reason(CloseCode.GOING_AWAY))
        if not self.hub.sessions:
            self._drained.set()

    async def wait_drained(self) -> None:
        """Return once ``stop`` was called and every session has ended."""
        await self._drained.wait()

    @property
    def stopping(self) -> bool:
        return self._stopping

    # -- The client side ---------------------------------------------------------------------

    async def handle(self, connection: ClientConnection) -> None:
        """Serve one client until it leaves, is cut off, or the gateway stops."""
        identity = await self.clients.authenticate(connection)
        if identity is None:
            return
        if self._stopping:
            await connection.close(CloseCode.GOING_AWAY, close_reason(CloseCode.GOING_AWAY))
            return
        await self._feed_open.wait()
        assert self._spawn_writer is not None
        session = Session(
            connection, identity, self.limits, self.node, self._spawn_writer, self._on_cut
        )
        self.hub.add(session)
        self.metrics.connection_opened()
        session.offer(_connected_frame(session, self.node))
        try:
            await self.clients.serve(session)
        finally:
            held = len(session.subscriptions)
            try:
                self.hub.remove(session)
            finally:
                if held:
                    self.metrics.unsubscribed(held)
                self.metrics.connection_closed()
                if self._stopping and not self.hub.sessions:
                    self._drained.set()
                with trio.CancelScope(shield=True):
                    await self.clients.close(session)

    def _session_cut(self, code: int) -> None:
        if code == CloseCode.SLOW_CONSUMER:
            self.metrics.queue_overflow()


def _connected_frame(session: Session, node: str) -> str:
    """The first frame of a connection: its id (to pass as ``exclude``), user and node."""
    data = {"connection_id": session.id, "user_id": session.identity.user_id, "node": node}
    return json.dumps({"type": "connected", "data": data}, separators=(",", ":"))
