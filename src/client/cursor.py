"""Where a subscription stands in its channel: the bookkeeping of resume, as pure code.

The rules are the browser client's (``client.js``, ``docs/client.md`` "Reconnecting and
resuming"): keep the last position seen; a fresh subscription adopts the position of its
``subscribed`` confirmation (so a client that never received anything still resumes without a
gap); a resumed one does not (the confirmation names the channel's current position, ahead of
the replay that follows) and advances message by message instead; a 410 with nothing received
since the resume continues from that confirmation. Messages whose id was seen recently are
dropped: a publisher that sent a message twice (an outbox after a lost answer) makes it arrive
twice with two positions.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

SEEN_IDS = 256
"""How many recent message ids a subscription remembers to drop a redelivered message."""


class Cursor:
    """The resume state of one subscription; no I/O, so every rule is a unit test."""

    def __init__(self, since: str | None = None) -> None:
        self.position: str | None = since
        """The last position seen (handed back as ``since``), or None."""
        self.members: dict[str, Any] = {}
        """Presence channels: user id -> user info."""
        self._since: str | None = None
        self._frontier: str | None = None
        self._seen: OrderedDict[str, None] = OrderedDict()

    def subscribe_frame(self, channel: str) -> dict[str, Any]:
        """The subscribe frame for this (re)connection: with ``since`` once a position is known."""
        self._since = self.position
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
        if self.position is not None:
            frame["since"] = self.position
        return frame

    @property
    def resuming(self) -> bool:
        """Whether the subscribe frame in flight carries ``since``."""
        return self._since is not None

    def subscribed(self, data: Any) -> None:
        """The gateway confirmed the subscription (``data``: position, members)."""
        data = data if isinstance(data, dict) else {}
        frontier = data.get("position")
        self._frontier = frontier if isinstance(frontier, str) else None
        if self._since is None and self._frontier is not None:
            self.position = self._frontier
        members = data.get("members")
        if isinstance(members, list):
            self.members = {
                str(member.get("user_id")): member.get("user_info")
                for member in members
                if isinstance(member, dict)
            }

    def accept(self, frame: dict[str, Any]) -> bool:
        """Take an event frame: False for a redelivery to drop, else True (position and presence
        members updated)."""
        ident = frame.get("id")
        if isinstance(ident, str):
            if ident in self._seen:
                return False
            self._seen[ident] = None
            if len(self._seen) > SEEN_IDS:
                self._seen.popitem(last=False)
        position = frame.get("position")
        if isinstance(position, str):
            self.position = position
        data = frame.get("data")
        if isinstance(data, dict) and "user_id" in data:
            if frame.get("event") == "presence.join":
                self.members[str(data["user_id"])] = data.get("user_info")
            elif frame.get("event") == "presence.leave":
                self.members.pop(str(data["user_id"]), None)
        return True

    def gap(self) -> None:
        """A 410: the subscription is live, messages were missed. If none arrived since the
        resume, continue from where the gateway stood when it confirmed."""
        if self.position == self._since and self._frontier is not None:
            self.position = self._frontier

    def forget_position(self) -> None:
        """The gateway could not read our position (400 on a resume): subscribe afresh."""
        self.position = None
