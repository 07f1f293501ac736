"""One client connection's state on the gateway: its subscriptions and its bounded outbox.

The dispatcher hands a session frames that are already encoded (one encoding per broadcast, shared
by every recipient) and never waits on it: ``deliver`` only appends to a bounded queue. A writer
task drains the queue and sends everything pending in one call, so a burst costs one write. The
writer is started on the first frame and ends after ``WRITER_LINGER`` seconds without any, so an
idle connection holds no task of its own beyond its reader. A session whose queue fills is cut off
with close code 4008 and resumes from its last position; the other sessions never notice.
"""

from __future__ import annotations

import secrets
from collections.abc import Awaitable, Callable

import trio

from ...domain import Channel, ConnectionRef, Identity, Position
from ...domain.disconnects import close_reason
from ...domain.protocol import CloseCode
from ...domain.ratelimit import TokenBucket
from ...ports import ClientConnection, ConnectionClosed, SendOutcome
from .limits import Limits

WRITER_LINGER = 5.0
"""Seconds a session's writer waits for more frames before it ends (and is started again)."""

Spawn = Callable[[Callable[[], Awaitable[None]]], None]


class Subscription:
    """One channel a session holds, with what it has already received of that channel."""

    __slots__ = ("backlog", "channel", "last_offset", "stream")

    def __init__(self, channel: Channel, since: Position | None = None) -> None:
        self.channel = channel
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


class Session:
    """A connected client: identity, subscriptions, outbox and the reason it is closing."""

    __slots__ = (
        "_drained",
        "_on_cut",
        "_queue",
        "_ready",
        "_scope",
        "_spawn",
        "_writing",
        "bucket",
        "closing",
        "connection",
        "id",
        "identity",
        "joins",
        "limits",
        "node",
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
        # A list, not a deque: the writer takes it whole, and an empty list is 56 bytes where an
        # empty deque is 600; the events exist only while someone waits on them.
        self._queue: list[str] = []
        self._ready: trio.Event | None = None
        self._drained: trio.Event | None = None
        self._scope: trio.CancelScope | None = None
        self._on_cut = on_cut
        self._spawn = spawn
        self._writing = False

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

    # -- Outbox ------------------------------------------------------------------------------

    def offer(self, frame: str, *, defer: bool = False) -> bool:
        """Queue a frame without waiting; a full queue cuts the session off as too slow.

        The frame goes out at once if the connection takes it without waiting (``kick``);
        ``defer`` leaves that to the caller, who kicks once after handing over a whole batch.
        """
        if self.closing:
            return False
        if len(self._queue) >= self.limits.queue_size:
            self.cut(CloseCode.SLOW_CONSUMER, close_reason(CloseCode.SLOW_CONSUMER))
            return False
        self._queue.append(frame)
        if self._writing:
            if self._ready is not None:
                self._ready.set()
        elif not defer:
            self.kick()
        return True

    def kick(self) -> None:
        """Send what is queued now if the connection takes it without waiting; otherwise start
        the writer task. A fan-out thus costs one system call per recipient, no task switch."""
        if self._writing or not self._queue or self.closing:
            return
        frames, self._queue = self._queue, []
        outcome = self.connection.send_nowait(frames)
        if outcome is SendOutcome.SENT:
            return
        if outcome is SendOutcome.BLOCKED:
            self._queue = frames + self._queue
        self._writing = True  # PARTIAL: the connection holds the rest; the writer flushes it
        self._spawn(self._write)

    async def put(self, frame: str) -> None:
        """Queue a frame, waiting while the queue is half full (replays; never the dispatcher)."""
        while len(self._queue) >= max(1, self.limits.queue_size // 2) and not self.closing:
            self._drained = trio.Event()
            await self._drained.wait()
        self._drained = None
        self.offer(frame)

    def deliver(self, channel: str, position: Position | None, frame: str) -> bool:
        """Queue one broadcast frame, duplicates of what the session has dropped; True when
        queued, and then the caller must ``kick`` the session once it has handed over its batch.
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
        return self.offer(frame, defer=True)

    async def _write(self) -> None:
        """Send queued frames, all pending ones in one call, until idle or closing."""
        try:
            await self.connection.send_many([])  # what a partial write left behind, if anything
            while not self.closing:
                if not self._queue:
                    self._ready = trio.Event()
                    with trio.move_on_after(WRITER_LINGER):
                        await self._ready.wait()
                    self._ready = None
                    if not self._queue:
                        return
                    continue
                frames, self._queue = self._queue, []
                if self._drained is not None:
                    self._drained.set()
                await self.connection.send_many(frames)
        except ConnectionClosed as exc:
            self.cut(1006, str(exc))
        finally:
            self._writing = False

    async def flush(self) -> None:
        """Send what is queued now (used right before a deliberate close)."""
        frames, self._queue = self._queue, []
        if frames:
            await self.connection.send_many(frames)

    # -- Lifetime ----------------------------------------------------------------------------

    def attach(self, scope: trio.CancelScope) -> None:
        self._scope = scope

    def cut(self, code: int, reason: str) -> None:
        """Stop the session now: its tasks are cancelled and the connection closed with ``code``."""
        if self.closing:
            return
        self.closing = (code, reason)
        if self._on_cut is not None:
            self._on_cut(code)
        for event in (self._ready, self._drained):
            if event is not None:
                event.set()
        if self._scope is not None:
            self._scope.cancel()
