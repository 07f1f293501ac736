"""The Pusher protocol's frames (version 7): client frames decoded and checked, server frames
encoded.

Every frame is a JSON object ``{"event", "channel"?, "data"?}``. In what the server sends,
``data`` is a JSON *string* for channel events and the ``pusher_internal:`` ones (pusher-js
decodes it again), an object for ``pusher:error`` and ``pusher:signin_success`` (pusher-js takes
either). Decoding raises ``PusherFrameError`` naming what was wrong; the gateway answers with a
``pusher:error`` and keeps the connection.
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from ..channel import Channel
from ..errors import InvalidChannel
from ..message import JSON, MAX_EVENT_LENGTH
from ..protocol import CLIENT_EVENT_PREFIX

MAX_AUTH_LENGTH = 1_024
"""Longest ``auth`` accepted (``key:`` and 64 hex digits fit many times over)."""
MAX_USER_ID_LENGTH = 128


class PusherFrameError(Exception):
    """A client frame the gateway refuses: becomes a ``pusher:error`` (``code`` None: the
    connection survives it), or a ``pusher:subscription_error`` on ``channel`` when
    ``status`` says the subscription was refused."""

    def __init__(
        self,
        message: str,
        code: int | None = None,
        channel: str | None = None,
        status: int | None = None,
    ) -> None:
        self.message = message
        self.code = code
        self.channel = channel
        self.status = status
        super().__init__(message)


@attrs.frozen
class PusherPing:
    pass


@attrs.frozen
class PusherPong:
    pass


@attrs.frozen
class PusherSubscribe:
    channel: Channel
    auth: str | None = None
    channel_data: str | None = None


@attrs.frozen
class PusherUserSubscribe:
    """pusher-js subscribes to ``#server-to-user-{id}`` once signed in (Pusher's channel for
    events sent to one user)."""

    user_id: str
    name: str


@attrs.frozen
class PusherUserUnsubscribe:
    user_id: str
    name: str


USER_CHANNEL_PREFIX = "#server-to-user-"


@attrs.frozen
class PusherUnsubscribe:
    channel: Channel


@attrs.frozen
class PusherSignin:
    auth: str
    user_data: str


@attrs.frozen
class PusherClientEvent:
    channel: Channel
    event: str
    data: JSON


PusherFrame = (
    PusherPing
    | PusherPong
    | PusherSubscribe
    | PusherUserSubscribe
    | PusherUserUnsubscribe
    | PusherUnsubscribe
    | PusherSignin
    | PusherClientEvent
)

KNOWN_EVENTS = ("pusher:ping", "pusher:pong", "pusher:subscribe", "pusher:unsubscribe",
                "pusher:signin", "client-*")  # fmt: skip


def _load(text: str, what: str) -> Any:
    try:
        return json.loads(text)
    except ValueError as exc:
        raise PusherFrameError(f"{what} is not valid JSON: {exc}") from None
    except RecursionError:
        raise PusherFrameError(f"{what} is nested too deeply") from None


def _object_data(frame: dict[str, Any], event: str) -> dict[str, Any]:
    """The ``data`` of a ``pusher:`` frame: an object, or a JSON string of one."""
    data = frame.get("data")
    if isinstance(data, str):
        data = _load(data, f"the data of {event}")
    if not isinstance(data, dict):
        raise PusherFrameError(f"{event} needs data as a JSON object, not {type(data).__name__}")
    return data


def _string(data: dict[str, Any], field: str, event: str, limit: int | None = None) -> str:
    value = data.get(field)
    if value is None:
        raise PusherFrameError(f"{event} needs a {field!r}")
    if not isinstance(value, str):
        raise PusherFrameError(f"{event}: {field!r} is a string, not {type(value).__name__}")
    if limit is not None and len(value) > limit:
        raise PusherFrameError(f"{event}: {field!r} is over {limit} characters")
    return value


def _channel(value: object, event: str) -> Channel:
    if value is None:
        raise PusherFrameError(f"{event} needs a 'channel'")
    if not isinstance(value, str):
        raise PusherFrameError(f"{event}: 'channel' is a string, not {type(value).__name__}")
    try:
        return Channel(value)
    except InvalidChannel as exc:
        raise PusherFrameError(str(exc), channel=value[:200]) from None


def decode_pusher_frame(text: str | bytes) -> PusherFrame:
    """Decode one client frame; raises ``PusherFrameError`` saying what was wrong."""
    if isinstance(text, bytes):
        raise PusherFrameError("binary frames are not accepted; send JSON text")
    frame = _load(text, "the frame")
    if not isinstance(frame, dict):
        raise PusherFrameError(f"a frame is a JSON object, not {type(frame).__name__}")
    event = frame.get("event")
    if not isinstance(event, str):
        raise PusherFrameError(f"a frame needs an 'event' string, got {event!r}"[:200])
    if event == "pusher:ping":
        return PusherPing()
    if event == "pusher:pong":
        return PusherPong()
    if event == "pusher:subscribe":
        data = _object_data(frame, event)
        name = data.get("channel")
        if isinstance(name, str) and name.startswith(USER_CHANNEL_PREFIX):
            return PusherUserSubscribe(name.removeprefix(USER_CHANNEL_PREFIX), name)
        channel = _channel(name, event)
        auth = data.get("auth")
        channel_data = data.get("channel_data")
        if auth is not None and not isinstance(auth, str):
            raise PusherFrameError(f"{event}: 'auth' is a string", channel=channel.name)
        if auth is not None and len(auth) > MAX_AUTH_LENGTH:
            raise PusherFrameError(f"{event}: 'auth' is too long", channel=channel.name)
        if channel_data is not None and not isinstance(channel_data, str):
            raise PusherFrameError(
                f"{event}: 'channel_data' is a JSON string", channel=channel.name
            )
        return PusherSubscribe(channel, auth, channel_data)
    if event == "pusher:unsubscribe":
        name = _object_data(frame, event).get("channel")
        if isinstance(name, str) and name.startswith(USER_CHANNEL_PREFIX):
            return PusherUserUnsubscribe(name.removeprefix(USER_CHANNEL_PREFIX), name)
        return PusherUnsubscribe(_channel(name, event))
    if event == "pusher:signin":
        data = _object_data(frame, event)
        return PusherSignin(
            _string(data, "auth", event, MAX_AUTH_LENGTH), _string(data, "user_data", event)
        )
    if event.startswith(CLIENT_EVENT_PREFIX):
        if len(event) > MAX_EVENT_LENGTH or not event.isprintable():
            raise PusherFrameError(f"event name {event[:40]!r} is too long or not printable")
        return PusherClientEvent(_channel(frame.get("channel"), event), event, frame.get("data"))
    raise PusherFrameError(
        f"unknown event {event[:40]!r}; a client sends {', '.join(KNOWN_EVENTS)}"
    )


def parse_channel_data(text: str | None, channel: str) -> tuple[str, JSON]:
    """A presence subscription's ``channel_data``: the member's ``user_id`` (a string or a
    number, kept as a string) and ``user_info``; raises ``PusherFrameError`` for bad data."""
    if text is None:
        raise PusherFrameError(
            "a presence channel needs 'channel_data' with a user_id", channel=channel, status=400
        )
    data = _load(text, "channel_data")
    if not isinstance(data, dict):
        raise PusherFrameError("channel_data is a JSON object", channel=channel, status=400)
    return _user_id(data.get("user_id"), "channel_data", channel), data.get("user_info")


def parse_user_data(text: str) -> tuple[str, JSON]:
    """A sign-in's ``user_data``: the user's ``id`` and ``user_info`` (may be absent)."""
    data = _load(text, "user_data")
    if not isinstance(data, dict):
        raise PusherFrameError("user_data is a JSON object with an 'id'")
    return _user_id(data.get("id"), "user_data", None), data.get("user_info")


def _user_id(value: object, where: str, channel: str | None) -> str:
    status = 400 if channel is not None else None
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise PusherFrameError(
            f"{where} needs a user id, a string or an integer", channel=channel, status=status
        )
    text = str(value)
    if not text or len(text) > MAX_USER_ID_LENGTH or not text.isprintable():
        raise PusherFrameError(
            f"{where}: a user id has 1 to {MAX_USER_ID_LENGTH} printable characters",
            channel=channel,
            status=status,
        )
    return text


# -- Server frames ---------------------------------------------------------------------------------


def _dump(value: object) -> str:
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"))


def _frame(event: str, channel: str | None = None, data: object = None) -> str:
    frame: dict[str, object] = {"event": event}
    if channel is not None:
        frame["channel"] = channel
    if data is not None:
        frame["data"] = data
    return _dump(frame)


def encode_data(data: JSON) -> str:
    """A channel event's ``data`` as Pusher sends it: a string as it is, anything else as
    JSON text (pusher-js decodes a string that is JSON, and keeps any other)."""
    return data if isinstance(data, str) else _dump(data)


def connection_established(socket_id: str, activity_timeout: int) -> str:
    payload = {"socket_id": socket_id, "activity_timeout": activity_timeout}
    return _frame("pusher:connection_established", data=_dump(payload))


def error(message: str, code: int | None = None) -> str:
    return _frame("pusher:error", data={"code": code, "message": message})


def subscription_error(channel: str, message: str, status: int) -> str:
    """A refused subscription, as pusher-js reports one of its own (``AuthError``)."""
    data = {"type": "AuthError", "error": message, "status": status}
    return _frame("pusher:subscription_error", channel, data)


PING = _frame("pusher:ping", data={})
PONG = _frame("pusher:pong", data={})


def presence_data(members: list[tuple[str, JSON]]) -> dict[str, object]:
    """The ``presence`` hash of a presence channel's ``subscription_succeeded``."""
    ids = [user_id for user_id, _ in members]
    return {"presence": {"ids": ids, "hash": dict(members), "count": len(ids)}}


def subscription_succeeded(channel: str, members: list[tuple[str, JSON]] | None = None) -> str:
    data: object = {} if members is None else presence_data(members)
    return _frame("pusher_internal:subscription_succeeded", channel, _dump(data))


def member_added(channel: str, user_id: str, user_info: JSON) -> str:
    payload = {"user_id": user_id, "user_info": user_info}
    return _frame("pusher_internal:member_added", channel, _dump(payload))


def member_removed(channel: str, user_id: str) -> str:
    return _frame("pusher_internal:member_removed", channel, _dump({"user_id": user_id}))


def signin_success(user_data: str) -> str:
    return _frame("pusher:signin_success", data={"user_data": user_data})


def cache_miss(channel: str) -> str:
    return _frame("pusher:cache_miss", channel)


def user_channel(user_id: str) -> str:
    """The Pusher name of a user's own channel."""
    return USER_CHANNEL_PREFIX + user_id


def event(channel: str, name: str, data: JSON, user_id: str | None = None) -> str:
    """A channel event; ``user_id`` is the sender of a client event on a presence channel."""
    frame: dict[str, object] = {"event": name, "channel": channel, "data": encode_data(data)}
    if user_id is not None:
        frame["user_id"] = user_id
    return _dump(frame)
