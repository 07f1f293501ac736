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

from ...domain import AccessPolicy, Channel, Identity, Message, Position, Presence, sse
from ...domain.disconnects import close_reason
from ...domain.errors import InvalidToken, TokenSecretMissing
from ...domain.presence import PresenceRecord
from ...domain.protocol import CloseCode, ErrorCode, ProtocolError
from ...domain.pusher import PusherApps, PusherCode
from ...ports import (
    ClientConnection,
    ConnectionClosed,
    EventStream,
    Feed,
    FeedOptions,
    FeedStatus,
    GatewayMetrics,
    History,
    HttpResponse,
    Pending,
    PresenceBus,
    RoutedConnection,
    Subscriber,
    TokenVerifier,
)
from .channel_events import ChannelEvents
from .client import ClientProtocol
from .cluster import ClusterPresence
from .hub import Hub
from .limits import Limits
from .occupancy import Occupancy
from .presence import PresenceTracker
from .pusher import PusherProtocol, PusherSession
from .session import Session
from .sse import LAST_EVENT_ID_PARAMETER, EventStreamFrames, heartbeat_period, retry_advice
from .webhooks import WebhookQueue
from .writer import Spawn

log = logging.getLogger("tidings.gateway")

WEBHOOK_FLUSH_TIMEOUT = 3.0
"""Seconds a stopping gateway waits for its last webhooks to be taken."""


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
        pusher_apps: PusherApps | None = None,
        webhooks: WebhookQueue | None = None,
    ) -> None:
        self.node = node
        self.epoch = epoch or secrets.token_hex(6)
        self.hub = Hub(PresenceTracker(node, self._local_presence_changed))
        self.occupancy = Occupancy(self.hub.table.count, self.hub.table.channels)
        """Subscriptions per channel across the cluster (ADR 0037)."""
        self.webhooks = webhooks
        self.cluster = ClusterPresence(
            self.hub.presence,
            self.hub.announce,
            timeout=presence_timeout,
            occupancy=self.occupancy,
            terminate=self._terminate_here,
        )
        self.channel_events = ChannelEvents(
            node=node,
            epoch=lambda: self.epoch,
            occupancy=self.occupancy,
            publish=presence_bus.publish,
            live_nodes=lambda: self.cluster.nodes().keys(),
            webhooks=webhooks,
        )
        self.cluster.node_lost = self.channel_events.node_lost
        self.hub.on_count = self.channel_events.count_changed
        self.hub.on_presence = self.channel_events.presence_changed
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
        client_events = self._client_event_publisher(publish)
        self.clients = ClientProtocol(
            hub=self.hub,
            limits=limits,
            metrics=metrics,
            tokens=tokens,
            policy=policy,
            history=history,
            publish=client_events,
            frontier=self._frontier,
            node=node,
        )
        """Each connection's protocol (shared by all: it holds no per-connection state)."""
        self.pusher = PusherProtocol(
            apps=pusher_apps or PusherApps(),
            hub=self.hub,
            limits=limits,
            metrics=metrics,
            history=history,
            publish=client_events,
            frontier=self._frontier,
        )
        """The Pusher protocol's, likewise (ADR 0035)."""

    def _client_event_publisher(
        self, publish: Callable[[Message], Pending]
    ) -> Callable[[Message], Pending]:
        """``publish`` for clients' events, which also reports each to the webhooks."""
        if self.webhooks is None:
            return publish
        report = self.channel_events.client_message

        def publish_and_report(message: Message) -> Pending:
            pending = publish(message)
            report(message)
            return pending

        return publish_and_report

    # -- The broker side ---------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Rebuild cluster presence, then pump the broker feed into the hub until ``stop``.

        The batch in hand when ``stop`` is called is dispatched and committed first.
        """
        async with trio.open_nursery() as nursery:
            self._spawn_writer = nursery.start_soon  # sessions' writers, owned by the gateway
            nursery.start_soon(self.hub.flusher.run)  # writes what each dispatch left pending
            await nursery.start(self._presence_bus.run, self.cluster)
            if self.webhooks is not None:
                nursery.start_soon(self.webhooks.run)
            await self._pump(task_status)
            if self.webhooks is not None:
                # What the last sessions' ends caused (vacated channels, members gone) goes out
                # before the gateway does, if the receiver takes it soon.
                with trio.move_on_after(WEBHOOK_FLUSH_TIMEOUT):
                    await self._drained.wait()
                    await self.webhooks.flush()
            nursery.cancel_scope.cancel()

    def terminate_user(self, user_id: str) -> int:
        """Close every connection of ``user_id``: this node's now, the other nodes' once the
        request reaches them on the presence bus. Returns how many were closed here."""
        self._presence_bus.publish(
            PresenceRecord.termination(self.node, self.epoch, time.time(), user_id)
        )
        return self._terminate_here(user_id)

    def _terminate_here(self, user_id: str) -> int:
        sessions = self.hub.sessions_of(user_id)
        for session in sessions:
            reason = close_reason(
                CloseCode.UNAUTHORIZED, "the server ended this user's connections"
            )
            session.cut(CloseCode.UNAUTHORIZED, reason)
        return len(sessions)

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
                    metrics = self.metrics
                    metrics.messages_in(len(batch))
                    sent: list[float] = []
                    metrics.messages_out(self.hub.dispatch(batch, sent))
                    if sent:  # the frames are handed over (written in the flush pass): one reading
                        metrics.sent(sent, time.time())
                    self.health.batches += 1
                    self.health.messages += len(batch)
                    await feed.commit()
                status = feed.status()
                self.metrics.broker_status(status.connected, status.lag)
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
            self.metrics.disconnected(CloseCode.GOING_AWAY)
            await connection.close(CloseCode.GOING_AWAY, close_reason(CloseCode.GOING_AWAY))
            return
        await self._feed_open.wait()
        session = self._open_session(connection, identity)
        try:
            await self.clients.serve(session)
        finally:
            await self._end_session(session)

    async def handle_pusher(self, connection: RoutedConnection) -> None:
        """Serve one Pusher client (``/app/{key}``, ADR 0035) until it leaves, is cut off, or
        the gateway stops; a refused one hears why in Pusher's terms."""
        admitted = self.pusher.admit(connection)
        if isinstance(admitted, PusherCode):
            key = connection.path.removeprefix("/app/")[:40]
            detail = f"no app has the key {key!r}".encode("ascii", "backslashreplace").decode()
            if admitted is not PusherCode.APP_NOT_FOUND:
                detail = "connect with protocol=7"
            await self.pusher.refuse(connection, admitted, detail)
            return
        if self._stopping:
            await self.pusher.refuse(connection, PusherCode.RECONNECT, "the gateway is stopping")
            return
        await self._feed_open.wait()
        assert self._spawn_writer is not None
        session = PusherSession(
            connection, admitted, self.limits, self.node, self._spawn_writer, self._on_cut
        )
        self.hub.add(session)
        self.metrics.connection_opened()
        session.offer(self.pusher.established(session))
        try:
            await self.pusher.serve(session)
        finally:
            await self._end_session(session)

    def _open_session(self, connection: ClientConnection, identity: Identity) -> Session:
        assert self._spawn_writer is not None
        session = Session(
            connection, identity, self.limits, self.node, self._spawn_writer, self._on_cut
        )
        self.hub.add(session)
        self.metrics.connection_opened()
        log.debug(
            "connection %s of user %r opened from %s",
            session.id,
            identity.user_id,
            connection.remote,
            extra={"connection": session.id, "node": self.node},
        )
        session.offer(_connected_frame(session, self.node))
        return session

    async def _end_session(self, session: Session) -> None:
        held = len(session.subscriptions)
        code, reason = session.closing or (CloseCode.NORMAL, "")
        try:
            self.hub.remove(session)
        finally:
            if held:
                self.metrics.unsubscribed(held)
            self.metrics.connection_closed()
            self.metrics.disconnected(code)
            log.debug(
                "connection %s closed: %d %s",
                session.id,
                code,
                reason,
                extra={"connection": session.id, "node": self.node, "code": int(code)},
            )
            if self._stopping and not self.hub.sessions:
                self._drained.set()
            with trio.CancelScope(shield=True):
                if isinstance(session, PusherSession):
                    await self.pusher.close(session)
                else:
                    await self.clients.close(session)

    async def handle_stream(self, stream: EventStream) -> None:
        """Serve one Server-Sent Events client (see ``sse``): refuse its request with an HTTP
        error, or open the stream and follow its channels until it leaves, is cut off, its
        token expires or the gateway stops."""
        opened = await self._open_stream(stream)
        if opened is None:
            return
        identity, channels, since = opened
        await self._feed_open.wait()
        frames = EventStreamFrames(stream, {name: str(at) for name, at in since.items()})
        try:
            await stream.open()
            await stream.send_many([retry_advice()])
        except ConnectionClosed:
            return
        session = self._open_session(frames, identity)
        if self._stopping:  # stop() came while the stream opened: it cut the others already
            session.cut(CloseCode.GOING_AWAY, close_reason(CloseCode.GOING_AWAY))
        try:
            await self._serve_stream(session, channels, since)
        finally:
            await self._end_session(session)

    async def _open_stream(
        self, stream: EventStream
    ) -> tuple[Identity, list[Channel], dict[str, Position]] | None:
        """Who the stream is for, its channels and where each resumes; None when refused."""
        request = stream.request
        try:
            channels = sse.parse_channels(request.query.get("channels"), self.limits.max_channels)
            resume = (
                request.headers.get("last-event-id", "").strip()
                or request.query.get(LAST_EVENT_ID_PARAMETER, "").strip()
            )
            since = sse.parse_resume_id(resume) if resume else {}
        except sse.InvalidStreamRequest as exc:
            await self._refuse_stream(stream, ErrorCode.BAD_FRAME, str(exc))
            return None
        try:
            identity = self.clients.identify(stream.take_token())
        except (InvalidToken, TokenSecretMissing) as exc:
            await self._refuse_stream(stream, ErrorCode.UNAUTHORIZED, str(exc))
            return None
        try:
            self.clients.authorize(identity, channels)
        except ProtocolError as exc:
            await self._refuse_stream(stream, exc.code, exc.message, exc.channel)
            return None
        if self._stopping:
            self.metrics.refused(503)
            await stream.refuse(
                HttpResponse(
                    503,
                    _json({"error": "the gateway is shutting down"}),
                    headers={"retry-after": "1"},
                )
            )
            return None
        names = {channel.name for channel in channels}
        return identity, channels, {name: at for name, at in since.items() if name in names}

    async def _refuse_stream(
        self, stream: EventStream, code: int, message: str, channel: str | None = None
    ) -> None:
        """An HTTP error for the whole stream; ``channel`` when one channel is the reason (so a
        client can drop that one and ask again)."""
        self.metrics.refused(code)
        log.debug(
            "stream from %s refused: %d %s",
            stream.remote,
            code,
            message,
            extra={"node": self.node, "channel": channel, "code": int(code)},
        )
        headers = {"www-authenticate": "Bearer"} if code == ErrorCode.UNAUTHORIZED else {}
        payload: dict[str, object] = {"error": message, "code": int(code)}
        if channel is not None:
            payload["channel"] = channel
        body = _json(payload)
        await stream.refuse(HttpResponse(int(code), body, "application/json", headers))

    async def _serve_stream(
        self, session: Session, channels: list[Channel], since: dict[str, Position]
    ) -> None:
        """Subscribe, then send heartbeats until the session is cut (the client left, was too
        slow, the gateway stops) or the token expires; an error stays this session's."""
        identity = session.identity
        with trio.CancelScope() as scope:
            session.attach(scope)  # from here, a cut cancels the scope
            if session.closing:
                return
            if identity.expires_at is not None:
                scope.deadline = trio.current_time() + identity.expires_at - time.time()
            try:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_watch_client, session)
                    for channel in channels:
                        await self.clients.subscribe(session, channel, since.get(channel.name))
                    period = heartbeat_period(self.limits.idle_timeout)
                    while True:  # until a cut cancels the scope
                        await trio.sleep(period)
                        session.offer(sse.HEARTBEAT)
            except Exception:
                log.exception(
                    "stream %s of user %r failed",
                    session.id,
                    identity.user_id,
                    extra={"connection": session.id, "node": self.node, "code": 1011},
                )
                self.metrics.connection_failed()
                session.cut(CloseCode.INTERNAL_ERROR, close_reason(CloseCode.INTERNAL_ERROR))
        if scope.cancelled_caught and not session.closing:  # the token expired
            session.cut(CloseCode.TOKEN_EXPIRED, close_reason(CloseCode.TOKEN_EXPIRED))

    def _session_cut(self, code: int) -> None:
        if code == CloseCode.SLOW_CONSUMER:
            self.metrics.queue_overflow()


def _json(payload: dict[str, object]) -> bytes:
    return json.dumps(payload, separators=(",", ":")).encode()


async def _watch_client(session: Session) -> None:
    """Wait for the client of a stream to go (it sends nothing), then cut its session."""
    try:
        await session.connection.receive()
    except ConnectionClosed:
        pass
    session.cut(1006, "client left")


def _connected_frame(session: Session, node: str) -> str:
    """The first frame of a connection: its id (to pass as ``exclude``), user and node."""
    data = {"connection_id": session.id, "user_id": session.identity.user_id, "node": node}
    return json.dumps({"type": "connected", "data": data}, separators=(",", ":"))
