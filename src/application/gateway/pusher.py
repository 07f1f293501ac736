"""The Pusher protocol on the gateway: one Pusher client's connection, from ``/app/{key}`` to close.

A Pusher client (pusher-js, Laravel Echo, any library of that ecosystem) is a ``PusherSession``:
a ``Session`` like any other, held by the same hub, fed by the same fan-out, with the same
limits, outbox and slow-reader cut. What differs is the wire: ``PusherProtocol`` reads the
client's ``pusher:`` frames and answers in Pusher's, and the hub encodes broadcasts for it in
Pusher's form (``Session.speaks_pusher``). Authorization is the app's: private and presence
channels need the ``auth`` the app's server signed with the app's secret. See ADR 0035.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable

import trio

from ...domain import JSON, Channel, Identity, Message, Position
from ...domain.access import ANONYMOUS
from ...domain.channel import ChannelKind
from ...domain.disconnects import close_reason
from ...domain.errors import (
    BrokerError,
    ChannelHasNoTopic,
    InvalidChannel,
    InvalidMessage,
    InvalidPosition,
    MessageTooLarge,
    PositionExpired,
)
from ...domain.protocol import CloseCode, ErrorCode
from ...domain.pusher import (
    MESSAGES,
    PusherApp,
    PusherApps,
    PusherChannelKind,
    PusherCode,
    PusherFrameError,
    channel_text,
    check_auth,
    decode_pusher_frame,
    frames,
    is_cache,
    needs_auth,
    pusher_close_code,
    pusher_kind,
    socket_id,
    takes_client_events,
    user_text,
)
from ...domain.pusher.frames import (
    PusherClientEvent,
    PusherPing,
    PusherSignin,
    PusherSubscribe,
    PusherUnsubscribe,
    PusherUserSubscribe,
    PusherUserUnsubscribe,
    parse_channel_data,
    parse_user_data,
)
from ...domain.pusher.socket_ids import MAX_PART
from ...ports import (
    ClientConnection,
    ConnectionClosed,
    FrameTooLarge,
    GatewayMetrics,
    History,
    Pending,
    RoutedConnection,
)
from .hub import Hub
from .limits import Limits
from .session import Session, Subscription
from .writer import Spawn

log = logging.getLogger("tidings.pusher")

PROTOCOL = 7
"""The Pusher protocol version served; older ones are refused with 4007, as Pusher does."""
MAX_ACTIVITY_TIMEOUT = 120
"""Seconds of silence after which a Pusher client pings (Pusher's own value, at most)."""
PONG_TIMEOUT = 30.0
"""Seconds a client has to answer the gateway's ``pusher:ping`` before it is cut (4201)."""


class PusherSession(Session):
    """A Pusher client's session: its app, and its socket id as its connection id (so a
    message's ``exclude`` works for both protocols: the HTTP API's ``socket_id`` is it)."""

    __slots__ = ("app", "pinged")
    speaks_pusher = True

    def __init__(
        self,
        connection: ClientConnection,
        app: PusherApp,
        limits: Limits,
        node: str,
        spawn: Spawn,
        on_cut: Callable[[int], None] | None = None,
    ) -> None:
        super().__init__(connection, ANONYMOUS, limits, node, spawn, on_cut)
        self.id = socket_id(secrets.randbelow(MAX_PART), secrets.randbelow(MAX_PART))
        self.app = app
        self.pinged = False
        """The gateway sent ``pusher:ping`` after a silence and waits for any frame."""


def activity_timeout(idle_timeout: float) -> int:
    """The ``activity_timeout`` announced: clients ping after that much silence, well before
    the gateway's idle timeout."""
    return max(1, min(MAX_ACTIVITY_TIMEOUT, int(idle_timeout / 2)))


class PusherProtocol:
    """See the module doc; one for the gateway, serving every Pusher connection."""

    def __init__(
        self,
        *,
        apps: PusherApps,
        hub: Hub,
        limits: Limits,
        metrics: GatewayMetrics,
        history: History | None,
        publish: Callable[[Message], Pending],
        frontier: Callable[[Channel], Position],
    ) -> None:
        self.apps = apps
        self.hub = hub
        self.limits = limits
        self.metrics = metrics
        self._history = history
        self._publish = publish
        self._frontier = frontier
        self.activity_timeout = activity_timeout(limits.idle_timeout)

    # -- Opening and closing -----------------------------------------------------------------

    def admit(self, connection: RoutedConnection) -> PusherApp | PusherCode:
        """The app a connection to ``/app/{key}?protocol=N`` is for, or the code it is refused
        with: 4001 unknown key, 4008 no protocol, 4006 not a number, 4007 older than 7."""
        key = connection.path.removeprefix("/app/")
        app = self.apps.by_key(key)
        if app is None:
            return PusherCode.APP_NOT_FOUND
        version = connection.query.get("protocol")
        if version is None or version == "":
            return PusherCode.NO_PROTOCOL
        if not version.isascii() or not version.isdigit() or len(version) > 9:
            return PusherCode.INVALID_VERSION
        if int(version) < PROTOCOL:
            return PusherCode.UNSUPPORTED_PROTOCOL
        return app

    async def refuse(self, connection: ClientConnection, code: PusherCode, detail: str) -> None:
        """Tell a refused client why in a ``pusher:error``, then close with the same code."""
        message = f"{MESSAGES[code]}: {detail}"
        self.metrics.refused(int(code))
        with trio.move_on_after(2):
            try:
                await connection.send_many([frames.error(message, int(code))])
            except ConnectionClosed:
                pass
        await connection.close(int(code), message[:120])

    def established(self, session: PusherSession) -> str:
        return frames.connection_established(session.id, self.activity_timeout)

    async def close(self, session: Session) -> None:
        """Say goodbye in Pusher's terms: a ``pusher:error`` with the code (when it is one of
        Pusher's), then the close frame with it (nothing after a lost connection)."""
        code, reason = session.closing or (CloseCode.NORMAL, "")
        if code == 1006:
            return
        pusher_code = pusher_close_code(code)
        with trio.move_on_after(1):
            try:
                if code == CloseCode.GOING_AWAY:
                    await session.flush()
                if pusher_code >= 4000:
                    await session.connection.send_many([frames.error(reason, pusher_code)])
            except ConnectionClosed:
                return
        await session.connection.close(pusher_code, reason[:120])

    # -- Reading -----------------------------------------------------------------------------

    async def serve(self, session: PusherSession) -> None:
        """Handle the client's frames until it leaves or is cut; an unexpected error stays
        this session's."""
        with trio.CancelScope() as scope:
            session.attach(scope)
            try:
                await self._read(session)
            except Exception:
                log.exception("Pusher connection %s failed", session.id)
                self.metrics.connection_failed()
                session.cut(CloseCode.INTERNAL_ERROR, close_reason(CloseCode.INTERNAL_ERROR))

    async def _read(self, session: PusherSession) -> None:
        """Frames until the client leaves. After a silence of the idle timeout the gateway
        pings (a Pusher client that only listens never has to send); no answer within
        ``PONG_TIMEOUT`` and the client is cut (4201)."""
        connection = session.connection
        while not session.closing:
            wait = min(PONG_TIMEOUT, self.limits.idle_timeout) if session.pinged else None
            with trio.move_on_after(wait or self.limits.idle_timeout) as silence:
                try:
                    raw = await connection.receive()
                except ConnectionClosed as exc:
                    session.cut(1006 if exc.code == 1006 else CloseCode.NORMAL, "client left")
                    return
                except FrameTooLarge as exc:
                    session.cut(
                        CloseCode.MESSAGE_TOO_BIG,
                        close_reason(CloseCode.MESSAGE_TOO_BIG, str(exc)),
                    )
                    return
            if silence.cancelled_caught:
                if session.pinged:
                    session.cut(CloseCode.IDLE, MESSAGES[PusherCode.PONG_NOT_RECEIVED])
                    return
                session.pinged = True
                session.offer(frames.PING)
                continue
            session.pinged = False
            try:
                await self._on_frame(session, raw)
            except PusherFrameError as exc:
                self._refuse(session, exc)

    def _refuse(self, session: Session, error: PusherFrameError) -> None:
        self.metrics.refused(error.status or error.code or int(ErrorCode.BAD_FRAME))
        if error.status is not None and error.channel is not None:
            session.offer(frames.subscription_error(error.channel, error.message, error.status))
        if error.status is None or error.code is not None:
            session.offer(frames.error(error.message, error.code))

    async def _on_frame(self, session: PusherSession, raw: str | bytes) -> None:
        limits = self.limits
        now = trio.current_time()
        if not session.bucket.take(now):
            if not session.may_be_refused(now):
                session.cut(CloseCode.FLOODING, close_reason(CloseCode.FLOODING))
                return
            raise PusherFrameError(
                f"{MESSAGES[PusherCode.CLIENT_EVENT_RATE_LIMIT]}: at most {limits.rate:g} "
                f"frames/s, bursts of {limits.burst}",
                PusherCode.CLIENT_EVENT_RATE_LIMIT,
            )
        size = len(raw) if isinstance(raw, bytes) else len(raw.encode("utf-8", "surrogatepass"))
        if size > limits.max_frame_bytes:
            raise PusherFrameError(
                f"frame of {size} bytes is over the limit of {limits.max_frame_bytes}"
            )
        frame = decode_pusher_frame(raw)
        if isinstance(frame, PusherPing):
            session.offer(frames.PONG)
        elif isinstance(frame, PusherSubscribe):
            await self._subscribe(session, frame)
        elif isinstance(frame, PusherUnsubscribe):
            if self.hub.unsubscribe(session, frame.channel):  # Pusher answers nothing
                self.metrics.unsubscribed()
        elif isinstance(frame, PusherUserSubscribe):
            self._user_channel(session, frame)
        elif isinstance(frame, PusherUserUnsubscribe):
            own = _own_channel(frame.user_id)
            if own is not None and self.hub.unsubscribe(session, own):
                self.metrics.unsubscribed()
        elif isinstance(frame, PusherSignin):
            self._sign_in(session, frame)
        elif isinstance(frame, PusherClientEvent):
            await self._client_event(session, frame)
        # PusherPong: the frame itself was the sign of life.

    # -- Subscribing -------------------------------------------------------------------------

    async def _subscribe(self, session: PusherSession, frame: PusherSubscribe) -> None:
        channel = frame.channel
        name = channel.name
        held = session.subscriptions.get(name)
        if held is not None:  # subscribing twice is harmless: say so again
            session.offer(self._succeeded(channel))
            return
        if len(session.subscriptions) >= self.limits.max_channels:
            raise PusherFrameError(
                f"this connection holds {len(session.subscriptions)} channels, the limit",
                channel=name,
                status=429,
            )
        member = self._authorize(session, frame)
        if channel.is_presence and not session.may_join(trio.current_time()):
            raise PusherFrameError(
                f"presence: at most {self.limits.presence_burst} joins at once and "
                f"{self.limits.presence_rate:g} a second after that",
                channel=name,
                status=429,
            )
        frontier = self._frontier(channel)
        subscription = Subscription(channel, member=member)
        subscription.advance(frontier)
        cache = is_cache(name)
        if cache:
            subscription.backlog = []  # live frames wait behind the cached one
        self.hub.subscribe(session, subscription)
        self.metrics.subscribed()
        session.offer(self._succeeded(channel))
        if cache:
            await self._send_last(session, subscription, frontier)

    def _authorize(self, session: PusherSession, frame: PusherSubscribe) -> tuple[str, JSON] | None:
        """Check the app's signature on a private or presence subscription; the member a
        presence subscription joins as. Raises ``PusherFrameError`` for a refusal."""
        name = frame.channel.name
        kind = pusher_kind(name)
        if kind is PusherChannelKind.PUBLIC and frame.channel.kind is not ChannelKind.PUBLIC:
            # user.42, private.x, presence.x: tidings' private channels, which a Pusher client
            # has no way to be authorized for (its library sends no auth for such a name).
            raise PusherFrameError(
                f"{name!r} is private to tidings' own clients; Pusher clients use channels "
                "named private-... or presence-...",
                PusherCode.UNAUTHORIZED,
                channel=name,
                status=403,
            )
        if not needs_auth(name):
            return None
        if frame.auth is None:
            raise PusherFrameError(
                f"{MESSAGES[PusherCode.UNAUTHORIZED]}: subscribing to {name!r} needs an 'auth'",
                PusherCode.UNAUTHORIZED,
                channel=name,
                status=401,
            )
        app = session.app
        text = channel_text(session.id, name, frame.channel_data)
        if not check_auth(frame.auth, app.key, app.secret, text):
            raise PusherFrameError(
                f"{MESSAGES[PusherCode.UNAUTHORIZED]}: invalid signature for {name!r}: expected "
                f"'{app.key}:' and the HMAC SHA256 hex digest of '{text}'",
                PusherCode.UNAUTHORIZED,
                channel=name,
                status=401,
            )
        if kind is PusherChannelKind.PRESENCE:
            return parse_channel_data(frame.channel_data, name)
        return None

    def _succeeded(self, channel: Channel) -> str:
        if not channel.is_presence:
            return frames.subscription_succeeded(channel.name)
        members = [(m.user_id, m.user_info) for m in self.hub.presence.members(channel)]
        return frames.subscription_succeeded(channel.name, members)

    async def _send_last(
        self, session: Session, subscription: Subscription, frontier: Position
    ) -> None:
        """A cache channel's last event, from the history resume uses (read from where the
        feed stands, so an event the broker has and the feed has not read yet counts);
        ``pusher:cache_miss`` when there is none the broker still holds. What arrived live
        meanwhile follows it, without duplicates."""
        channel = subscription.channel
        last = None
        if self._history is not None:
            since = Position(frontier.stream, max(-1, frontier.offset - 1))
            try:
                async for batch in self._history.replay(channel, since):
                    for delivered in batch:
                        if delivered.position is not None:
                            last = delivered
            except (PositionExpired, InvalidPosition, BrokerError) as exc:
                log.debug("no cached event for %s: %s", channel.name, exc)
        if last is None:
            session.offer(frames.cache_miss(channel.name))
        else:
            message = last.message
            user_id = message.user_id if channel.is_presence else None
            if last.position is not None and subscription.is_new(last.position):
                subscription.advance(last.position)
            await session.put(frames.event(channel.name, message.event, message.data, user_id))
        subscription.go_live(session.offer)

    # -- Signing in and client events --------------------------------------------------------

    def _sign_in(self, session: PusherSession, frame: PusherSignin) -> None:
        """``pusher:signin``: the app vouches for who the user is; the connection then is
        that user (its identity), and ``pusher:signin_success`` says so."""
        app = session.app
        if not check_auth(frame.auth, app.key, app.secret, user_text(session.id, frame.user_data)):
            raise PusherFrameError(
                f"{MESSAGES[PusherCode.UNAUTHORIZED]}: invalid signature for the sign-in",
                PusherCode.UNAUTHORIZED,
            )
        user_id, user_info = parse_user_data(frame.user_data)
        session.identity = Identity(user_id=user_id, user_info=user_info)
        session.offer(frames.signin_success(frame.user_data))

    def _user_channel(self, session: PusherSession, frame: PusherUserSubscribe) -> None:
        """``#server-to-user-{id}``, which pusher-js subscribes to once signed in: granted to
        that user alone, it is tidings' ``user.{id}`` (what a service sends to one user), its
        events delivered under the Pusher name."""
        if session.identity.user_id != frame.user_id:
            raise PusherFrameError(
                f"{frame.name!r} is user {frame.user_id!r}'s: sign in as that user first",
                PusherCode.UNAUTHORIZED,
                channel=frame.name[:200],
                status=403,
            )
        own = _own_channel(frame.user_id)
        if own is not None and own.name not in session.subscriptions:
            if len(session.subscriptions) >= self.limits.max_channels:
                raise PusherFrameError(
                    f"this connection holds {len(session.subscriptions)} channels, the limit",
                    channel=frame.name[:200],
                    status=429,
                )
            subscription = Subscription(own)
            subscription.advance(self._frontier(own))
            self.hub.subscribe(session, subscription)
            self.metrics.subscribed()
        session.offer(frames.subscription_succeeded(frame.name))

    async def _client_event(self, session: PusherSession, frame: PusherClientEvent) -> None:
        channel = frame.channel
        name = channel.name
        if not takes_client_events(name):
            raise PusherFrameError(
                "client events go on private or presence channels, "
                f"not {pusher_kind(name).value} {name!r}"
            )
        subscription = session.subscriptions.get(name)
        if subscription is None:
            raise PusherFrameError(f"subscribe to {name!r} before sending on it")
        user_id = subscription.member[0] if subscription.member else session.identity.user_id
        try:
            message = Message(
                channel=channel,
                event=frame.event,
                data=frame.data,
                exclude=session.id,
                user_id=user_id,
            )
            pending = self._publish(message)
        except InvalidMessage as exc:
            detail = "too large" if isinstance(exc, MessageTooLarge) else "not accepted"
            raise PusherFrameError(f"client event {detail}: {exc}") from None
        try:
            await pending
        except ChannelHasNoTopic as exc:
            raise PusherFrameError(str(exc)) from None
        except BrokerError as exc:
            self.metrics.refused(503)
            session.offer(frames.error(f"the broker did not take the event: {exc}"))


def _own_channel(user_id: str) -> Channel | None:
    """tidings' channel of one user, ``user.{id}``; None for an id no channel name can hold
    (the user's Pusher channel is then granted, and stays silent)."""
    try:
        return Channel(f"user.{user_id}")
    except InvalidChannel:
        return None
