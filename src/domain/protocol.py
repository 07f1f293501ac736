"""The WebSocket protocol, version 1: client frames decoded and checked, server frames encoded.

Every client frame is a JSON object with a ``type``. Decoding either returns one of the frame
classes below or raises ``ProtocolError`` carrying the error code and a message that names what
was wrong; the gateway turns that into an error frame and keeps the connection open.

Codes: 400 bad frame, 401 no or bad token, 403 not allowed, 404 unknown (e.g. a channel the
connection does not hold), 410 position too old to resume, 413 too large, 429 rate limited.
"""

from __future__ import annotations

import enum
import json

import attrs

from .channel import Channel
from .errors import InvalidChannel, InvalidMessage, InvalidPosition
from .message import JSON, MAX_EVENT_LENGTH, Message
from .position import Position

CLIENT_EVENT_PREFIX = "client-"


class ErrorCode(enum.IntEnum):
    BAD_FRAME = 400
    UNAUTHORIZED = 401
    FORBIDDEN = 403
    NOT_FOUND = 404
    GONE = 410
    TOO_LARGE = 413
    RATE_LIMITED = 429


class CloseCode(enum.IntEnum):
    """WebSocket close codes the gateway uses; 4xxx are ours, and say what the client should do."""

    NORMAL = 1000
    GOING_AWAY = 1001
    """The gateway is shutting down: reconnect (to another node) and resume."""
    PROTOCOL_ERROR = 1002
    """The client broke the WebSocket protocol."""
    INVALID_DATA = 1007
    """A text frame or close reason that is not UTF-8."""
    MESSAGE_TOO_BIG = 1009
    INTERNAL_ERROR = 1011
    """Serving the connection failed on the gateway's side: reconnect and resume."""
    IDLE = 4000
    """The client sent nothing within the idle timeout (clients ping to stay): reconnect."""
    SLOW_CONSUMER = 4008
    """The client did not read fast enough and its queue filled: reconnect and resume."""
    TOKEN_EXPIRED = 4001
    """The connection token expired: reconnect with a fresh token and resume."""
    UNAUTHORIZED = 4401
    """The token given at connect time is invalid: do not retry with the same token."""
    FLOODING = 4029
    """The client ignored rate-limit errors; back off before reconnecting."""


class ProtocolError(Exception):
    """A client frame the gateway refuses; becomes an error frame, never a dropped connection."""

    def __init__(self, code: ErrorCode, message: str, channel: str | None = None) -> None:
        self.code = code
        self.message = message
        self.channel = channel
        super().__init__(f"{int(code)} {message}")


@attrs.frozen
class Subscribe:
    channel: Channel
    since: Position | None = None


@attrs.frozen
class Unsubscribe:
    channel: Channel


@attrs.frozen
class ClientEvent:
    channel: Channel
    event: str
    data: JSON = None


@attrs.frozen
class Ping:
    pass


ClientFrame = Subscribe | Unsubscribe | ClientEvent | Ping

CLIENT_FRAME_TYPES = ("subscribe", "unsubscribe", "event", "ping")


def _channel_field(frame: dict[str, JSON]) -> Channel:
    if "channel" not in frame:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"a {frame['type']} frame needs a channel")
    name = frame["channel"]
    try:
        return Channel(name)
    except InvalidChannel as exc:
        shown = name if isinstance(name, str) else None
        raise ProtocolError(ErrorCode.BAD_FRAME, str(exc), shown) from None


def decode_client_frame(text: str | bytes) -> ClientFrame:
    """Decode one client frame; raises ``ProtocolError`` with the code and what was wrong."""
    if isinstance(text, bytes):
        raise ProtocolError(ErrorCode.BAD_FRAME, "binary frames are not accepted; send JSON text")
    try:
        frame = json.loads(text)
    except ValueError as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, f"frame is not valid JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError(ErrorCode.BAD_FRAME, "frame is nested too deeply") from None
    if not isinstance(frame, dict):
        raise ProtocolError(
            ErrorCode.BAD_FRAME, f"a frame is a JSON object, not {type(frame).__name__}"
        )
    kind = frame.get("type")
    if kind == "ping":
        return Ping()
    if kind == "subscribe":
        channel = _channel_field(frame)
        since = frame.get("since")
        if since is None:
            return Subscribe(channel)
        try:
            return Subscribe(channel, Position.parse(since))
        except InvalidPosition as exc:
            raise ProtocolError(ErrorCode.BAD_FRAME, str(exc), channel.name) from None
    if kind == "unsubscribe":
        return Unsubscribe(_channel_field(frame))
    if kind == "event":
        channel = _channel_field(frame)
        event = frame.get("event")
        if not isinstance(event, str) or not event.startswith(CLIENT_EVENT_PREFIX):
            raise ProtocolError(
                ErrorCode.BAD_FRAME,
                f"client event names start with {CLIENT_EVENT_PREFIX!r}, got {event!r}",
                channel.name,
            )
        if len(event) > MAX_EVENT_LENGTH or not event.isprintable():
            raise ProtocolError(
                ErrorCode.BAD_FRAME,
                f"event name {event[:40]!r} is too long or not printable",
                channel.name,
            )
        return ClientEvent(channel, event, frame.get("data"))
    if not isinstance(kind, str):
        raise ProtocolError(ErrorCode.BAD_FRAME, f"frame type must be a string, got {kind!r}")
    raise ProtocolError(
        ErrorCode.BAD_FRAME,
        f"unknown frame type {kind[:40]!r}; known types: {', '.join(CLIENT_FRAME_TYPES)}",
    )


def _dump(frame: dict[str, JSON]) -> str:
    # ASCII: an error frame may quote a client's malformed text, lone surrogates included.
    return json.dumps(frame, ensure_ascii=True, separators=(",", ":"))


def encode_event(message: Message, position: Position | None = None) -> str:
    """The frame that delivers ``message``: its envelope plus ``position`` when it has one."""
    extra = f',"position":"{position}"' if position is not None else ""
    return message.to_json(extra=extra, for_client=True)


def encode_subscribed(channel: Channel, data: JSON = None) -> str:
    frame: dict[str, JSON] = {"type": "subscribed", "channel": channel.name}
    if data is not None:
        frame["data"] = data
    return _dump(frame)


def encode_unsubscribed(channel: Channel) -> str:
    return _dump({"type": "unsubscribed", "channel": channel.name})


PONG = _dump({"type": "pong"})


def encode_error(code: ErrorCode | int, message: str, channel: str | None = None) -> str:
    frame: dict[str, JSON] = {"type": "error"}
    if channel is not None:
        frame["channel"] = channel
    frame["data"] = {"code": int(code), "message": message}
    return _dump(frame)


def error_from(exc: ProtocolError) -> str:
    return encode_error(exc.code, exc.message, exc.channel)


def client_message(frame: ClientEvent, connection_id: str, user_id: str | None = None) -> Message:
    """The broker message a client event becomes: sent to the others, never back to its sender,
    and signed with the sender's verified user id so receivers can trust who sent it."""
    try:
        return Message(
            channel=frame.channel,
            event=frame.event,
            data=frame.data,
            exclude=connection_id,
            user_id=user_id,
        )
    except InvalidMessage as exc:
        raise ProtocolError(ErrorCode.BAD_FRAME, str(exc), frame.channel.name) from None
