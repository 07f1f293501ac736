"""Server-Sent Events: the stream's request (channels, resume id) and its events' text.

An SSE stream (``GET /sse?channels=a,b``) carries the WebSocket protocol's server frames, one
per event, as the event's ``data`` (ADR 0031). A frame delivering a message is an unnamed event,
so ``EventSource.onmessage`` sees it; every other frame is named after its type (``connected``,
``subscribed``, ``error``) and the stream's end is a ``disconnect`` event.

The browser resends only the last event id it saw (``Last-Event-ID``), and a stream holds
several channels, so an event's id is the stream's whole resume state: every channel with the
position the client has received up to, ``news=3f2a9c1d0e4b-17~sport=3f2a9c1d0e4b-9``. Channel
names may hold ``=`` but never ``~``, and positions hold neither, so the text splits back
exactly.
"""

from __future__ import annotations

from collections.abc import Mapping

from .channel import Channel
from .errors import InvalidChannel, InvalidPosition, TidingsError
from .position import Position

HEARTBEAT = ": ping\n\n"
"""A comment line: keeps proxies and the browser from taking the stream for dead."""


class InvalidStreamRequest(TidingsError, ValueError):
    """An SSE request the gateway refuses (400): the message names the parameter and why."""


def parse_channels(text: str | None, limit: int) -> list[Channel]:
    """The channels of ``?channels=a,b``, in order, each once; at most ``limit`` of them.

    A channel name may contain ``,``: such a channel cannot be named here (use WebSocket).
    """
    if text is None or not text.strip():
        raise InvalidStreamRequest(
            "parameter 'channels': give the channels to follow, ?channels=a,b"
        )
    names = list(dict.fromkeys(name.strip() for name in text.split(",")))
    if len(names) > limit:
        raise InvalidStreamRequest(
            f"parameter 'channels': {len(names)} channels, over the limit of {limit} "
            "a connection may hold"
        )
    channels = []
    for name in names:
        try:
            channels.append(Channel(name))
        except InvalidChannel as exc:
            raise InvalidStreamRequest(f"parameter 'channels': {exc}") from None
    return channels


def encode_resume_id(positions: Mapping[str, str]) -> str:
    """The id of an event: each channel and the position (text) it has been received up to."""
    return "~".join(f"{channel}={position}" for channel, position in positions.items())


def parse_resume_id(text: str) -> dict[str, Position]:
    """The positions an event id holds, by channel name; ``InvalidStreamRequest`` names what
    is wrong with an id this gateway did not issue."""
    positions: dict[str, Position] = {}
    for part in text.split("~"):
        channel, separator, position = part.rpartition("=")
        if not separator or not channel:
            raise InvalidStreamRequest(
                f"Last-Event-ID {text[:80]!r} is not an event id of this gateway: "
                "expected channel=position entries joined by '~'"
            )
        try:
            positions[channel] = Position.parse(position)
        except InvalidPosition as exc:
            raise InvalidStreamRequest(f"Last-Event-ID, channel {channel!r}: {exc}") from None
    return positions


def encode_event(data: str, *, event: str | None = None, event_id: str | None = None) -> str:
    """One event's text: ``id``, ``event``, then ``data`` (one line for each line of it)."""
    lines = []
    if event_id is not None:
        lines.append(f"id: {event_id}\n")
    if event is not None:
        lines.append(f"event: {event}\n")
    if "\n" in data or "\r" in data:  # never for the gateway's frames (JSON escapes them)
        text = data.replace("\r\n", "\n").replace("\r", "\n")
        lines += [f"data: {line}\n" for line in text.split("\n")]
    else:
        lines.append(f"data: {data}\n")
    lines.append("\n")
    return "".join(lines)


def retry_advice(milliseconds: int) -> str:
    """How long the browser waits before reconnecting after the stream ends."""
    return f"retry: {milliseconds}\n\n"
