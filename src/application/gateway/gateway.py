"""The gateway: client sessions on one side, the broker feed on the other, the protocol between.

``Gateway.run`` pumps the broker feed into the hub and commits each batch only after it has been
handed to the local sessions (at-least-once; the sessions' positions drop the duplicates a
redelivery brings). ``Gateway.handle`` serves one client connection from token check to close.
Both live in nurseries owned by the caller, so shutting down is cancelling a scope.
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Callable

import attrs
import trio

from ...domain import AccessPolicy, Channel, Identity, Message, Position, Presence
from ...domain.access import ANONYMOUS
from ...domain.disconnects import close_reason
from ...domain.errors import (
    BrokerError,
    ChannelHasNoTopic,
    InvalidMessage,
    InvalidPosition,
    InvalidToken,
    MessageTooLarge,
    PositionExpired,
    TokenExpired,
    TokenSecretMissing,
)
from ...domain.presence import PresenceRecord
from ...domain.protocol import (
    PONG,
    ClientEvent,
    CloseCode,
    ErrorCode,
    Ping,
    ProtocolError,
    Subscribe,
    Unsubscribe,
    client_message,
    decode_client_frame,
    encode_error,
    encode_event,
    encode_subscribed,
    encode_unsubscribed,
    error_from,
)
from ...ports import (
    ClientConnection,
    ConnectionClosed,
    Feed,
    FeedOptions,
    FeedStatus,
    FrameTooLarge,
    GatewayMetrics,
    History,
    Pending,
    PresenceBus,
    Subscriber,
    TokenVerifier,
)
from .cluster import ClusterPresence
from .hub import Hub
from .limits import Limits
from .presence import PresenceTracker
from .session import Session, Spawn, Subscription

log = logging.getLogger("tidings.gateway")

IDLE_CLOSE = CloseCode.IDLE
"""Close code for a client that sent nothing within the idle timeout (clients ping to stay)."""


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
        self._history = history
        self._publish = publish
        self._tokens = tokens
        self._policy = policy
        self._feed_options = feed_options
        self._feed: Feed | None = None
        self._feed_open = trio.Event()
        self._stopping = False
        self._drained = trio.Event()
        self._spawn_writer: Spawn | None = None
        """Starts a session's writer task in the gateway's nursery (one bound method for all)."""
        self._on_cut = self._session_cut  # likewise shared by every session

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
        identity = await self._authenticate(connection)
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
        expires = None
        if identity.expires_at is not None:
            expires = trio.current_time() + identity.expires_at - time.time()
        try:
            with trio.CancelScope() as scope:
                session.attach(scope)
                try:
                    await self._read(session, scope, expires)
                except Exception:
                    # One connection's failure is that connection's alone: say so once, with
                    # its id, count it, and close it as an internal error.
                    log.exception("connection %s of user %r failed", session.id, identity.user_id)
                    self.metrics.connection_failed()
                    session.cut(CloseCode.INTERNAL_ERROR, close_reason(CloseCode.INTERNAL_ERROR))
            if scope.cancelled_caught and not session.closing:  # a deadline passed
                if expires is not None and trio.current_time() >= expires:
                    session.cut(CloseCode.TOKEN_EXPIRED, close_reason(CloseCode.TOKEN_EXPIRED))
                else:
                    idle = self.limits.idle_timeout
                    session.cut(
                        IDLE_CLOSE, close_reason(IDLE_CLOSE, f"no frame in {idle:g} s; ping")
                    )
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
                    await self._close(session)

    def _session_cut(self, code: int) -> None:
        if code == CloseCode.SLOW_CONSUMER:
            self.metrics.queue_overflow()

    async def _authenticate(self, connection: ClientConnection) -> Identity | None:
        token = connection.take_token()
        if token is None:
            return ANONYMOUS
        try:
            if not token:
                raise InvalidToken("the token is empty: connect without ?token= to be anonymous")
            return self._tokens.verify(token)
        except (InvalidToken, TokenSecretMissing) as exc:
            self.metrics.refused(ErrorCode.UNAUTHORIZED)
            expired = isinstance(exc, TokenExpired)
            code = CloseCode.TOKEN_EXPIRED if expired else CloseCode.UNAUTHORIZED
            with trio.move_on_after(2):
                try:
                    await connection.send_many([encode_error(ErrorCode.UNAUTHORIZED, str(exc))])
                except ConnectionClosed:
                    pass
            await connection.close(code, close_reason(code, str(exc))[:120])
            return None

    async def _close(self, session: Session) -> None:
        code, reason = session.closing or (CloseCode.NORMAL, "")
        if code == 1006:
            return  # the client is gone; there is nobody to say goodbye to
        if code == CloseCode.GOING_AWAY:
            with trio.move_on_after(1):
                try:
                    await session.flush()
                except ConnectionClosed:
                    return
        await session.connection.close(code, reason[:120])

    async def _read(self, session: Session, scope: trio.CancelScope, expires: float | None) -> None:
        """Handle the client's frames until it leaves or the session is cut.

        One cancel scope serves the connection's life (an idle connection holds no more): its
        deadline is the sooner of the token's expiry and the idle timeout, which every frame
        re-arms; ``Session.cut`` cancels it.
        """
        connection = session.connection
        idle = self.limits.idle_timeout
        while not session.closing:
            idle_until = trio.current_time() + idle
            scope.deadline = idle_until if expires is None else min(idle_until, expires)
            try:
                raw = await connection.receive()
            except ConnectionClosed as exc:
                session.cut(1006 if exc.code == 1006 else CloseCode.NORMAL, "client left")
                return
            except FrameTooLarge as exc:
                session.cut(
                    CloseCode.MESSAGE_TOO_BIG, close_reason(CloseCode.MESSAGE_TOO_BIG, str(exc))
                )
                return
            try:
                await self._on_frame(session, raw)
            except ProtocolError as exc:
                self._refuse(session, exc)

    def _refuse(self, session: Session, error: ProtocolError) -> None:
        self.metrics.refused(error.code)
        session.offer(error_from(error))

    async def _on_frame(self, session: Session, raw: str | bytes) -> None:
        limits = self.limits
        now = trio.current_time()
        if not session.bucket.take(now):
            if not session.may_be_refused(now):
                session.cut(CloseCode.FLOODING, close_reason(CloseCode.FLOODING))
                return
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"rate limit: at most {limits.rate:g} frames/s, bursts of {limits.burst}",
            )
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode())
        if size > limits.max_frame_bytes:
            raise ProtocolError(
                ErrorCode.TOO_LARGE,
                f"frame of {size} bytes is over the limit of {limits.max_frame_bytes}",
            )
        frame = decode_client_frame(raw)
        if isinstance(frame, Ping):
            session.offer(PONG)
        elif isinstance(frame, Subscribe):
            await self._subscribe(session, frame)
        elif isinstance(frame, Unsubscribe):
            self._unsubscribe(session, frame.channel)
        elif isinstance(frame, ClientEvent):
            await self._client_event(session, frame)

    async def _subscribe(self, session: Session, frame: Subscribe) -> None:
        channel = frame.channel
        held = session.subscriptions.get(channel.name)
        if held is not None:  # subscribing twice is harmless: say where the subscription stands
            current = Position(held.stream, held.last_offset) if held.stream else None
            session.offer(encode_subscribed(channel, self._subscribed_data(channel, current)))
            return
        if len(session.subscriptions) >= self.limits.max_channels:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"this connection holds {len(session.subscriptions)} channels, the limit",
                channel.name,
            )
        decision = self._policy.decide(session.identity, channel)
        if not decision.allowed:
            raise ProtocolError(ErrorCode(int(decision.verdict)), decision.reason, channel.name)
        if channel.is_presence and not session.may_join(trio.current_time()):
            # Each join is announced to every member, and its leave too: a client that keeps
            # joining and leaving would make the gateway send its members a storm of frames.
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"presence: at most {self.limits.presence_burst} joins at once and "
                f"{self.limits.presence_rate:g} a second after that",
                channel.name,
            )
        assert self._feed is not None
        frontier = self._feed.frontier(channel)
        subscription = Subscription(channel, frame.since)
        if frame.since is None:
            subscription.advance(frontier)
        self.hub.subscribe(session, subscription)
        self.metrics.subscribed()
        # A resuming client is told its own position back: it has nothing newer until the replay.
        told = frontier if frame.since is None else frame.since
        session.offer(encode_subscribed(channel, self._subscribed_data(channel, told)))
        if frame.since is not None:
            await self._replay(session, subscription, frame.since)

    def _subscribed_data(
        self, channel: Channel, frontier: Position | None
    ) -> dict[str, object] | None:
        data: dict[str, object] = {}
        if frontier is not None:
            data["position"] = str(frontier)
        if channel.is_presence:
            data["members"] = [member.to_dict() for member in self.hub.presence.members(channel)]
        return data or None

    async def _replay(self, session: Session, subscription: Subscription, since: Position) -> None:
        """Send what the client missed, then release what arrived live meanwhile, deduplicated."""
        channel = subscription.channel
        try:
            if self._history is None:
                raise PositionExpired(str(since), None)
            async for batch in self._history.replay(channel, since):
                for delivered in batch:
                    position = delivered.position
                    if position is None or not subscription.is_new(position):
                        continue
                    if delivered.message.exclude == session.id:
                        subscription.advance(position)
                        continue
                    await session.put(encode_event(delivered.message, position))
                    subscription.advance(position)
                    if session.closing:
                        return
        except (PositionExpired, InvalidPosition) as exc:
            # The subscription stays live; the client learns it missed messages and resyncs.
            subscription.stream, subscription.last_offset = None, -1
            self._refuse(session, ProtocolError(ErrorCode.GONE, str(exc), channel.name))
        except BrokerError as exc:
            subscription.stream, subscription.last_offset = None, -1
            self._refuse(
                session,
                ProtocolError(ErrorCode.GONE, f"cannot read history now: {exc}", channel.name),
            )
        backlog, subscription.backlog = subscription.backlog or [], None
        for position, frame in backlog:
            if position is not None:
                if not subscription.is_new(position):
                    continue
                subscription.advance(position)
            session.offer(frame)

    def _unsubscribe(self, session: Session, channel: Channel) -> None:
        if not self.hub.unsubscribe(session, channel):
            raise ProtocolError(
                ErrorCode.NOT_FOUND, f"this connection does not hold {channel.name!r}", channel.name
            )
        self.metrics.unsubscribed()
        session.offer(encode_unsubscribed(channel))

    async def _client_event(self, session: Session, frame: ClientEvent) -> None:
        channel = frame.channel
        if channel.is_public:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"client events go on private or presence channels, not public {channel.name!r}",
                channel.name,
            )
        if channel.name not in session.subscriptions:
            raise ProtocolError(
                ErrorCode.FORBIDDEN,
                f"subscribe to {channel.name!r} before sending on it",
                channel.name,
            )
        message = client_message(frame, session.id, session.identity.user_id)
        try:
            pending = self._publish(message)
        except InvalidMessage as exc:
            code = ErrorCode.TOO_LARGE if isinstance(exc, MessageTooLarge) else ErrorCode.BAD_FRAME
            raise ProtocolError(code, str(exc), channel.name) from None
        try:
            await pending
        except ChannelHasNoTopic as exc:
            # Only the server creates topics (ADR 0016): the channel is unknown to the broker.
            self._refuse(session, ProtocolError(ErrorCode.NOT_FOUND, str(exc), channel.name))
        except BrokerError as exc:
            self.metrics.refused(503)
            session.offer(encode_error(503, f"broker did not take the event: {exc}", channel.name))


def _connected_frame(session: Session, node: str) -> str:
    """The first frame of a connection: its id (to pass as ``exclude``), user and node."""
    data = {"connection_id": session.id, "user_id": session.identity.user_id, "node": node}
    return json.dumps({"type": "connected", "data": data}, separators=(",", ":"))
