"""The values a client hands out: events of a channel, and changes of the connection's state."""

from __future__ import annotations

import enum
import json
from typing import Any

import attrs

from ..domain.errors import InvalidMessage, InvalidPosition
from ..domain.message import JSON, Message
from ..domain.position import Position
from ..domain.protocol import encode_event

PRESENCE_EVENTS = frozenset({"presence.join", "presence.leave"})


@attrs.frozen
class Event:
    """One event of a channel, as the gateway delivered it.

    ``position`` is opaque (hand it back as ``since`` to resume) and absent on presence events;
    ``user_id`` is the verified sender of a client event, absent on broadcasts.
    """

    channel: str
    event: str
    data: JSON = None
    id: str | None = None
    position: str | None = None
    timestamp: float | None = None
    user_id: str | None = None

    @property
    def is_presence(self) -> bool:
        """A ``presence.join`` or ``presence.leave`` (data: ``user_id``, ``user_info``)."""
        return self.event in PRESENCE_EVENTS

    @classmethod
    def from_frame(cls, frame: dict[str, Any]) -> Event:
        """The event of an ``event`` frame (fields the client does not know are left out)."""
        timestamp = frame.get("timestamp")
        position = frame.get("position")
        user_id = frame.get("user_id")
        ident = frame.get("id")
        return cls(
            channel=str(frame["channel"]),
            event=str(frame["event"]),
            data=frame.get("data"),
            id=ident if isinstance(ident, str) else None,
            position=position if isinstance(position, str) else None,
            timestamp=float(timestamp) if isinstance(timestamp, int | float) else None,
            user_id=user_id if isinstance(user_id, str) else None,
        )

    def to_json(self) -> str:
        """One JSON line, the shape ``tidings kafka consume`` prints (``encode_event``): the
        envelope, then ``position`` when the event has one."""
        envelope = {
            "id": self.id,
            "type": "event",
            "channel": self.channel,
            "event": self.event,
            "data": self.data,
            "timestamp": self.timestamp,
            "user_id": self.user_id,
        }
        try:
            message = Message.from_dict({k: v for k, v in envelope.items() if v is not None})
        except InvalidMessage:  # a newer gateway's envelope: show it as received
            return json.dumps(attrs.asdict(self), separators=(",", ":"), ensure_ascii=False)
        if self.position is None:
            return encode_event(message)
        try:
            return encode_event(message, Position.parse(self.position))
        except InvalidPosition:  # positions are opaque: keep one this version cannot read
            return message.to_json(
                extra=f',"position":{json.dumps(self.position)}', for_client=True
            )


class State(enum.StrEnum):
    """Where a client's connection stands."""

    CONNECTING = "connecting"
    """Opening a connection (the first, or again after a drop)."""
    CONNECTED = "connected"
    """The gateway confirmed the connection; subscriptions are (re)sent."""
    RECONNECTING = "reconnecting"
    """The connection dropped or could not be opened; waiting ``retry_in`` seconds."""
    FAILED = "failed"
    """Stopped for good: the token was refused, or ``max_retries`` ran out. See ``error``."""
    CLOSED = "closed"
    """Closed by its owner."""


@attrs.frozen
class StateChange:
    """What ``on_state`` callbacks receive: the new state and why."""

    state: State
    reason: str | None = None
    """Why the connection ended or could not be opened (a close code and reason, an OS error)."""
    retry_in: float | None = None
    """Seconds until the next attempt (``RECONNECTING`` only)."""
    error: Exception | None = None
    """What stopped the client (``FAILED`` only)."""
