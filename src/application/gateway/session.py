"""One client connection's state on the gateway: who it is, what it holds, why it is closing.

The frames a session is sent go through its ``Outbox`` (``writer``); when the outbox says it is
full, the session is cut off with close code 4008 and the client resumes from its last position;
the other sessions never notice.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable

import trio

from ...domain import JSON, Channel, ConnectionRef, Identity, Position
from ...domain.disconnects import close_reason
from ...domain.protocol import CloseCode
from ...domain.ratelimit import TokenBucket
from ...ports import ClientConnection
from .limits import Limits
from .writer import Outbox, Spawn


class Subscription:
    """One channel a session holds, with what it has already received of that channel."""

    __slots__ = ("backlog", "channel", "last_offset", "member", "stream")

    def __init__(
        self,
        channel: Channel,
        since: Position | None = None,
        member: tuple[str, JSON] | None = None,
    ) -> None:
        self.channel = channel
        self.member = member
        """Who the session is on this presence channel when not its identity: a Pusher
        client names itself per channel, in the ``channel_data`` the app signed."""
        self.stream: str | None = since.stream if since else None
        self.last_offset = since.offset if since else -1
        self.backlog: list[tuple[Position | None, str]] | None = [] if since else None
        """Live frames held back while the session replays what it missed; None when live."""

    def is_new(self, position: Position) -> bool:
        """Whether ``position`` is after everything this subscription has received."""
        return position.stream != self.stream or position.offset > self.last_offset

    def advance(self, position: Position) -> None:
        self.stream = position.stream
        self.last_offset = position.offset

    def go_live(self, offer: Callable[[str], object]) -> None:
        """The replay is over: offer the live frames held back meanwhile, in order, but those
        the replay already gave; from now on frames go straight out."""
        backlog, self.backlog = self.backlog or [], None
        for position, frame in backlog:
            if position is not None:
                if not self.is_new(position):
                    continue
                self.advance(position)
            offer(frame)


class Session:
    """A connected client: identity, subscriptions, outbox and the reason it is closing."""

    speaks_pusher = False
    """Whether the client speaks the Pusher protocol (``PusherSession``): the hub encodes its
    frames in that protocol instead of tidings' own."""

    __slots__ = (
        "_on_cut",
        "_scope",
        "bucket",
        "closing",
        "connection",
        "id",
        "identity",
        "joins",
        "limits",
        "node",
        "outbox",
        "refusals",
        "subscriptions",
    )

    def __init__(
        self,
        connection: ClientConnection,
        identity: Identity,
        limits: Limits,
        node: str,
        spawn: Spawn,
        on_cut: Callable[[int], None] | None = None,
    ) -> None:
        self.id = secrets.token_urlsafe(9)
        self.node = node
        self.connection = connection
        self.identity = identity
        self.limits = limits
        self.subscriptions: dict[str, Subscription] = {}
        self.bucket = TokenBucket(limits.rate, limits.burst)
        self.refusals: TokenBucket | None = None
        """Rate-limit refusals a client may collect (made at its first): see ``may_be_refused``."""
        self.joins: TokenBucket | None = None
        """Presence channels this client may join (made at its first): see ``may_join``."""
        self.closing: tuple[int, str] | None = None
        self.outbox = Outbox(connection, limits.queue_size, spawn, self._lost)
        self._scope: trio.CancelScope | None = None
        self._on_cut = on_cut

    def may_be_refused(self, now: float) -> bool:
        """Whether a client over the rate limit gets a refusal rather than being cut: it is cut
        once its refusals outrun a quarter of the rate limit for long enough, whatever its pace
        (ignoring 429s is flooding)."""
        if self.refusals is None:
            self.refusals = TokenBucket(self.limits.rate / 4, self.limits.flood_refusals)
        return self.refusals.take(now)

    def may_join(self, now: float) -> bool:
        """Whether the client may join one more presence channel now (a token bucket)."""
        if self.joins is None:
            self.joins = TokenBucket(self.limits.presence_rate, self.limits.presence_burst)
        return self.joins.take(now)

    @property
    def ref(self) -> ConnectionRef:
        """This connection, as presence knows it (made on demand: few sessions need it)."""
        return ConnectionRef(self.node, self.id)

    def __repr__(self) -> str:
        return f"<Session {self.id} user={self.identity.user_id!r} from {self.connection.remote}>"

    # -- Frames out --------------------------------------------------------------------------

    def offer(self, frame: str, *, defer: bool = False) -> bool:
        """Queue a frame without waiting (see ``Outbox.offer``); a full outbox cuts the session
        off as too slow."""
        if self.closing:
            return False
        if self.outbox.offer(frame, defer=defer):
            return True
        self.cut(CloseCode.SLOW_CONSUMER, close_reason(CloseCode.SLOW_CONSUMER))
        return False

    async def put(self, frame: str) -> None:
        """Queue a frame, waiting while the outbox is half full (replays; never the dispatcher)."""
        if not self.closing and not await self.outbox.put(frame) and not self.closing:
            self.cut(CloseCode.SLOW_CONSUMER, close_reason(CloseCode.SLOW_CONSUMER))

    def deliver(self, channel: str, position: Position | None, frame: str) -> bool:
        """Queue one broadcast frame, skipping what the session already has; True when queued,
        and then the caller must have the session's outbox written (the hub's ``Flusher``).
        """
        subscription = self.subscriptions.get(channel)
        if subscription is None:
            return False
        if subscription.backlog is not None:
            if len(subscription.backlog) >= self.limits.queue_size:
                self.cut(
                    CloseCode.SLOW_CONSUMER,
                    close_reason(CloseCode.SLOW_CONSUMER, "too much arrived during resume"),
                )
                return False
            subscription.backlog.append((position, frame))
            return False
        if position is not None:
            if not subscription.is_new(position):
                return False
            subscription.advance(position)
        if self.closing:
            return False
        if self.outbox.offer(frame, defer=True):
            return True
        self.cut(CloseCode.SLOW_CONSUMER, close_reason(CloseCode.SLOW_CONSUMER))
        return False

    async def flush(self) -> None:
        """Send what is queued now (used right before a deliberate close)."""
        await self.outbox.flush()

    # -- Lifetime ----------------------------------------------------------------------------

    def attach(self, scope: trio.CancelScope) -> None:
        self._scope = scope

    def _lost(self, reason: str) -> None:
        self.cut(1006, reason)

    def cut(self, code: int, reason: str) -> None:
        """Stop the session now: its tasks are cancelled and the connection closed with ``code``."""
        if self.closing:
            return
        self.closing = (code, reason)
        if self._on_cut is not None:
            self._on_cut(code)
        self.outbox.close()
        if self._scope is not None:
            self._scope.cancel()
