"""The hub: which local sessions hold which channel, and the fan-out of broker messages to them.

It owns "channel -> sessions" and nothing else (no I/O). ``dispatch`` is the hot path: one table
lookup and one encoding per message, then a non-blocking hand-off to each recipient; the
recipients' outboxes are left pending for the ``Flusher`` to write, at least every
``FLUSH_EVERY`` hand-offs (ADR 0038).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from ...domain import Channel, Message, PresenceChange, SubscriptionTable
from ...domain.errors import InvalidMessage
from ...domain.protocol import encode_event
from ...domain.pusher import frames as pusher_frames
from ...ports import Delivered
from .presence import PresenceTracker
from .session import Session, Subscription
from .writer import Flusher

log = logging.getLogger("tidings.gateway")

FLUSH_EVERY = 100_000
"""Hand-offs a dispatch makes before it writes what it has handed so far: a big fan-out (a list
of 100 messages to 10,000 clients is a million) starts writing after a bounded part of the
batch, not after the whole of it, while a list of 100 to 1,000 clients still goes out in one
write each."""
FRAMES_PER_WRITE = 32
"""... and at least this many frames per pending outbox on average: a write's fixed cost (the
system call, the receiver's TCP path on loopback) stays spread over many frames when the
recipients are many (a list of 100 to 10,000 clients: a write every 32 messages)."""


CountChanged = Callable[[str, int, int], None]
"""Told a channel's name, and this node's subscriptions on it before and after a change."""


class Hub:
    def __init__(self, presence: PresenceTracker) -> None:
        self.presence = presence
        self.flusher = Flusher()
        """Writes the outboxes a dispatch left pending (its task runs in the gateway)."""
        self.table: SubscriptionTable[Session] = SubscriptionTable()
        self.sessions: dict[str, Session] = {}
        self.invalid = 0
        """Messages skipped because their envelope, decoded late, was not valid."""
        self.on_count: CountChanged | None = None
        """Told each change of this node's subscriptions on a channel (cluster occupancy)."""
        self.on_presence: Callable[[Channel, PresenceChange], None] | None = None
        """Told each change of a channel's members that a local join or leave caused."""

    # -- Membership --------------------------------------------------------------------------

    def add(self, session: Session) -> None:
        self.sessions[session.id] = session

    def remove(self, session: Session) -> None:
        """Forget a session that ended; presence leaves go out to the remaining members."""
        self.sessions.pop(session.id, None)
        for target in self.table.remove_subscriber(session):
            if isinstance(target, Channel):
                self._counted(target, +1)
                self._leave_presence(session, target)
        session.subscriptions.clear()

    def sessions_of(self, user_id: str) -> list[Session]:
        """This node's sessions of one user."""
        return [s for s in self.sessions.values() if s.identity.user_id == user_id]

    def _counted(self, channel: Channel, before_offset: int) -> None:
        """Report a change of the channel's count; ``before_offset``: what the count was above
        the current one (+1 after a removal, -1 after an addition)."""
        if self.on_count is not None:
            after = self.table.count(channel)
            self.on_count(channel.name, after + before_offset, after)

    def subscribe(self, session: Session, subscription: Subscription) -> None:
        channel = subscription.channel
        session.subscriptions[channel.name] = subscription
        if self.table.add(session, channel):
            self._counted(channel, -1)
        if not channel.is_presence:
            return
        user_id, info = subscription.member or (
            session.identity.user_id,
            session.identity.user_info,
        )
        if user_id is not None:
            change = self.presence.join(channel, session.ref, user_id, info)
            self.announce(channel, change, skip=session)
            if change and self.on_presence is not None:
                self.on_presence(channel, change)

    def unsubscribe(self, session: Session, channel: Channel) -> bool:
        if not self.table.remove(session, channel):
            return False
        self._counted(channel, +1)
        session.subscriptions.pop(channel.name, None)
        self._leave_presence(session, channel)
        return True

    def _leave_presence(self, session: Session, channel: Channel) -> None:
        if channel.is_presence:
            change = self.presence.leave(channel, session.ref)
            self.announce(channel, change)
            if change and self.on_presence is not None:
                self.on_presence(channel, change)

    def announce(
        self, channel: Channel, change: PresenceChange, skip: Session | None = None
    ) -> None:
        """Send ``presence.join`` / ``presence.leave`` for a change to the channel's sessions
        (``pusher_internal:member_added`` / ``member_removed`` to Pusher clients)."""
        if not change:
            return
        pusher: list[str] | None = None
        frames = [
            encode_event(Message.event(channel, "presence.join", member.to_dict()))
            for member in change.joined
        ] + [
            encode_event(Message.event(channel, "presence.leave", member.to_dict()))
            for member in change.left
        ]
        for session in self.table.subscribers(channel):
            if session is skip:
                continue
            if session.speaks_pusher:
                if pusher is None:
                    pusher = _pusher_presence(channel, change)
                for frame in pusher:
                    session.offer(frame)
                continue
            for frame in frames:
                session.offer(frame)

    # -- Fan-out -----------------------------------------------------------------------------

    def dispatch(self, batch: Sequence[Delivered], sent: list[float] | None = None) -> int:
        """Hand every message of a batch to its local subscribers; returns frames handed on.

        The recipients' outboxes are marked pending and the flusher woken: each is written
        once, soon, with whatever it holds by then. A dispatch that hands over ``FLUSH_EVERY``
        frames, ``FRAMES_PER_WRITE`` per recipient or more, writes what is pending before it
        goes on. ``sent`` collects the envelope
        timestamp of each message handed to at least one session (publish-to-hand-off latency,
        once per message).
        """
        handed = 0
        table = self.table
        flusher = self.flusher
        pending = flusher.pending
        flushed = 0  # hand-offs written by this dispatch already
        for delivered in batch:
            name = delivered.channel
            recipients = table.subscribers(name)
            if not recipients:
                continue
            try:
                message = delivered.message
            except InvalidMessage as exc:  # an envelope decoded only now, and it is no message
                self._skip(delivered, exc)
                continue
            position = delivered.position
            frame = encode_event(message, position)
            pusher: str | None = None  # encoded once, for the first Pusher client among them
            exclude = message.exclude
            before = handed
            for session in recipients:
                if session.id == exclude:
                    continue
                if session.speaks_pusher:
                    if pusher is None:
                        pusher = _pusher_event(message)
                    took = session.deliver(name, position, pusher)
                else:
                    took = session.deliver(name, position, frame)
                if took:
                    pending[session.outbox] = None
                    handed += 1
            if sent is not None and handed != before:
                sent.append(message.timestamp)
            since = handed - flushed
            if since >= FLUSH_EVERY and since >= FRAMES_PER_WRITE * len(pending):
                flusher.flush_now()  # bounded work before the first bytes go out
                pending = flusher.pending
                flushed = handed
        if handed:
            flusher.wake()
        return handed

    def _skip(self, delivered: Delivered, exc: InvalidMessage) -> None:
        self.invalid += 1
        if self.invalid == 1 or self.invalid % 1000 == 0:
            log.warning(
                "skipping %d invalid message(s); latest at %s: %s",
                self.invalid,
                delivered.position,
                exc,
            )

    @property
    def connection_count(self) -> int:
        return len(self.sessions)

    @property
    def subscription_count(self) -> int:
        return self.table.subscription_count


def _pusher_event(message: Message) -> str:
    """A broker message as Pusher clients receive it; the sender's ``user_id`` only on presence
    channels (as Pusher does). A user's own channel, ``user.{id}``, is Pusher's
    ``#server-to-user-{id}``: only that user, signed in, holds it (ADR 0035)."""
    channel = message.channel
    user_id = message.user_id if channel.is_presence else None
    owner = channel.owner
    name = channel.name if owner is None else pusher_frames.user_channel(owner)
    return pusher_frames.event(name, message.event, message.data, user_id)


def _pusher_presence(channel: Channel, change: PresenceChange) -> list[str]:
    name = channel.name
    return [
        pusher_frames.member_added(name, member.user_id, member.user_info)
        for member in change.joined
    ] + [pusher_frames.member_removed(name, member.user_id) for member in change.left]
