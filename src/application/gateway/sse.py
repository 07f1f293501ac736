"""Server-Sent Events: a receive-only connection that speaks the WebSocket protocol's frames.

An SSE client names its channels in the request and cannot send anything after it, so its
protocol is small: the request is checked whole before the stream opens (a refusal is an HTTP
status with a reason: 400, 401, 403, 429, 503), then the session subscribes to every channel as
a WebSocket client would (same authorization, limits, presence and ``since`` replay, through
``ClientProtocol.subscribe``) and from there is an ordinary ``Session``: the hub fans out to it,
its outbox bounds what it may fall behind, a full outbox cuts it, ``Gateway.stop`` drains it.

``EventStreamFrames`` sits between the session and the stream: it turns each frame into an
event and gives every frame that moves a channel's position the stream's whole resume state as
its id (ADR 0031), so the browser's ``Last-Event-ID`` resumes every channel exactly. A frame is
parsed once for all the SSE sessions it goes to (the fan-out hands them the same string);
WebSocket sessions never pay for any of this.
"""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from typing import Any

from ...domain import sse
from ...domain.disconnects import DISCONNECTS
from ...ports import EventStream, SendOutcome

RETRY_MS = (1_000, 3_000)
"""The ``retry:`` advice, drawn per stream in this range (milliseconds): when a gateway drains,
its clients come back spread over two seconds rather than all at once."""
MAX_HEARTBEAT = 15.0
"""Longest gap between heartbeats (seconds); shorter when REALTIME_IDLE_TIMEOUT is short."""
LAST_EVENT_ID_PARAMETER = "lastEventId"
"""The query parameter that stands for the ``Last-Event-ID`` header (a page cannot set headers
on an ``EventSource``); the header wins when both are given."""

_BLOCKED = SendOutcome.BLOCKED
_Parsed = tuple[str, str | None, str | None]
"""A frame's type, channel and position (as text), as far as the stream needs them."""
_last: tuple[str, _Parsed] | None = None
"""The frame parsed last: the fan-out hands one string to every SSE session of a channel."""


def heartbeat_period(idle_timeout: float) -> float:
    """Seconds between heartbeats: under the idle timeout a WebSocket client is held to."""
    return min(MAX_HEARTBEAT, idle_timeout / 2)


def retry_advice() -> str:
    return sse.retry_advice(random.randint(*RETRY_MS))


def _parse(frame: str) -> _Parsed:
    global _last
    if _last is not None and _last[0] is frame:
        return _last[1]
    decoded: dict[str, Any] = json.loads(frame)
    kind = decoded.get("type", "")
    channel = decoded.get("channel")
    position = decoded.get("position")
    if kind == "subscribed":
        data = decoded.get("data")
        position = data.get("position") if isinstance(data, dict) else None
    parsed = (kind, channel, position)
    _last = (frame, parsed)
    return parsed


class EventStreamFrames:
    """The session's connection on an SSE stream (implements ``ClientConnection``): frames in,
    events out; see the module doc."""

    __slots__ = ("_positions", "_stream")

    def __init__(self, stream: EventStream, since: dict[str, str] | None = None) -> None:
        self._stream = stream
        self._positions: dict[str, str] = dict(since or {})
        """Each channel and the position the client has had everything up to, as sent."""

    def take_token(self) -> str | None:
        return self._stream.take_token()

    @property
    def remote(self) -> str:
        return self._stream.remote

    async def receive(self) -> str | bytes:
        return await self._stream.receive()

    def send_nowait(self, frames: Sequence[str]) -> SendOutcome:
        events, positions = self._events(frames)
        outcome = self._stream.send_nowait(events)
        if outcome is not _BLOCKED:  # what was not written is held, and goes out first
            self._positions = positions
        return outcome

    async def send_many(self, frames: Sequence[str]) -> None:
        events, self._positions = self._events(frames)
        await self._stream.send_many(events)

    def _events(self, frames: Sequence[str]) -> tuple[list[str], dict[str, str]]:
        """The frames as events, and the positions once they are sent. Nothing is recorded
        here: a write that takes nothing (``BLOCKED``) is tried again with the same frames."""
        positions = self._positions
        copied = False
        events = []
        for frame in frames:
            if frame is sse.HEARTBEAT:
                events.append(frame)
                continue
            kind, channel, position = _parse(frame)
            event_id = None
            if channel is not None and position is not None:
                if not copied:
                    positions, copied = dict(positions), True
                positions[channel] = position
                event_id = sse.encode_resume_id(positions)
            name = None if kind == "event" else kind
            events.append(sse.encode_event(frame, event=name, event_id=event_id))
        return events, positions

    async def close(self, code: int, reason: str = "") -> None:
        """End the stream with a ``disconnect`` event that says why and what to do."""
        row = DISCONNECTS.get(code)
        data = {"code": code, "reason": reason, "advice": row.advice.value if row else "resume"}
        goodbye = sse.encode_event(json.dumps(data, separators=(",", ":")), event="disconnect")
        await self._stream.finish(goodbye)
