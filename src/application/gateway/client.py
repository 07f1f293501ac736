"""The client side of the gateway: one connection's protocol, from token to close.

``ClientProtocol`` reads a client's frames and answers each one: it authenticates the token,
enforces the per-connection limits (frame rate and size, channels held, presence joins),
authorizes and performs subscribes (with resume from ``since``), unsubscribes and client events,
and decides when the connection ends (idle, token expiry, flooding, a frame too large, a bug).
It shares one hub and one broker feed with every other connection, through the ``Gateway``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence

import trio

from ...domain import AccessPolicy, Channel, Identity, Message, Position
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
    FrameTooLarge,
    GatewayMetrics,
    History,
    Pending,
    TokenVerifier,
)
from .hub import Hub
from .limits import Limits
from .session import Session, Subscription

log = logging.getLogger("tidings.gateway")


class ClientProtocol:
    """See the module doc; one for the gateway, serving every connection."""

    def __init__(
        self,
        *,
        hub: Hub,
        limits: Limits,
        metrics: GatewayMetrics,
        tokens: TokenVerifier,
        policy: AccessPolicy,
        history: History | None,
        publish: Callable[[Message], Pending],
        frontier: Callable[[Channel], Position],
        node: str = "",
    ) -> None:
        self.node = node
        """The gateway node, named in log lines."""
        self.hub = hub
        self.limits = limits
        self.metrics = metrics
        self._tokens = tokens
        self._policy = policy
        self._history = history
        self._publish = publish
        self._frontier = frontier

    async def serve(self, session: Session) -> None:
        """Handle the client's frames until it leaves or is cut; a deadline that passes (idle,
        token expiry) cuts it, and so does an unexpected error, which stays this session's."""
        identity = session.identity
        expires = None
        if identity.expires_at is not None:
            expires = trio.current_time() + identity.expires_at - time.time()
        with trio.CancelScope() as scope:
            session.attach(scope)
            try:
                await self._read(session, scope, expires)
            except Exception:
                # One connection's failure is that connection's alone: say so once, with its
                # id, count it, and close it as an internal error.
                log.exception(
                    "connection %s of user %r failed",
                    session.id,
                    identity.user_id,
                    extra={"connection": session.id, "node": session.node, "code": 1011},
                )
                self.metrics.connection_failed()
                session.cut(CloseCode.INTERNAL_ERROR, close_reason(CloseCode.INTERNAL_ERROR))
        if scope.cancelled_caught and not session.closing:  # a deadline passed
            if expires is not None and trio.current_time() >= expires:
                session.cut(CloseCode.TOKEN_EXPIRED, close_reason(CloseCode.TOKEN_EXPIRED))
            else:
                idle = self.limits.idle_timeout
                session.cut(
                    CloseCode.IDLE, close_reason(CloseCode.IDLE, f"no frame in {idle:g} s; ping")
                )

    async def authenticate(self, connection: ClientConnection) -> Identity | None:
        """The connection's identity from its token (anonymous without one); None when the
        token is refused, and then the client has had its error frame and close code."""
        try:
            return self.identify(connection.take_token())
        except (InvalidToken, TokenSecretMissing) as exc:
            self.metrics.refused(ErrorCode.UNAUTHORIZED)
            expired = isinstance(exc, TokenExpired)
            code = CloseCode.TOKEN_EXPIRED if expired else CloseCode.UNAUTHORIZED
            self.metrics.disconnected(code)
            # The reason names what is wrong with the token, never the token itself.
            log.debug(
                "connection from %s refused: %s",
                connection.remote,
                exc,
                extra={"node": self.node, "code": int(code)},
            )
            with trio.move_on_after(2):
                try:
                    await connection.send_many([encode_error(ErrorCode.UNAUTHORIZED, str(exc))])
                except ConnectionClosed:
                    pass
            await connection.close(code, close_reason(code, str(exc))[:120])
            return None

    def identify(self, token: str | None) -> Identity:
        """Who presents ``token`` (anonymous without one); raises ``InvalidToken`` (or
        ``TokenSecretMissing``) saying why it is refused."""
        if token is None:
            return ANONYMOUS
        if not token:
            raise InvalidToken("the token is empty: connect without ?token= to be anonymous")
        return self._tokens.verify(token)

    def authorize(self, identity: Identity, channels: Sequence[Channel]) -> None:
        """Check at once what subscribing to all of ``channels`` will check one by one (a
        stream's request is refused whole): raises ``ProtocolError`` for the first refusal."""
        for channel in channels:
            decision = self._policy.decide(identity, channel)
            if not decision.allowed:
                raise ProtocolError(ErrorCode(int(decision.verdict)), decision.reason, channel.name)
        joins = sum(1 for channel in channels if channel.is_presence)
        if joins > self.limits.presence_burst:
            raise ProtocolError(
                ErrorCode.RATE_LIMITED,
                f"presence: at most {self.limits.presence_burst} presence channels at once, "
                f"not {joins}",
            )

    async def subscribe(
        self, session: Session, channel: Channel, since: Position | None = None
    ) -> None:
        """Subscribe ``session`` as a subscribe frame would; a refusal is sent as an error."""
        try:
            await self._subscribe(session, Subscribe(channel, since))
        except ProtocolError as exc:
            self._refuse(session, exc)

    async def close(self, session: Session) -> None:
        """Say goodbye with the code the session was cut with (nothing after a lost one)."""
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
        log.debug(
            "connection %s refused: %d %s",
            session.id,
            error.code,
            error.message,
            extra={
                "connection": session.id,
                "node": session.node,
                "channel": error.channel,
                "code": int(error.code),
            },
        )
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
        # An ASCII text's length is its size: no copy of the frame just to count it.
        size = len(raw) if isinstance(raw, bytes) or raw.isascii() else len(raw.encode())
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
        frontier = self._frontier(channel)
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
        subscription.go_live(session.offer)

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
