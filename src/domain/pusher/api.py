"""What Pusher's HTTP API accepts: events to trigger and the ``info`` a caller asks for.

Pure rules, so property tests can hold them: ``parse_event`` reads one event of
``POST /apps/{app_id}/events`` or of a ``batch_events`` list and refuses, with Pusher's status
(400, or 413 for data over the limit) and a message naming the field, whatever is not an event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import attrs

from ..channel import Channel
from ..errors import InvalidChannel
from .signing import RequestRefused

MAX_DATA_BYTES = 10_240
"""Pusher's limit on an event's ``data`` (UTF-8 bytes); ``PUSHER_MAX_DATA_BYTES`` changes it."""
MAX_EVENT_NAME = 200
MAX_CHANNELS = 100
"""Channels one ``POST /events`` may name."""
MAX_BATCH = 10
"""Events one ``POST /batch_events`` may carry."""
SOCKET_ID = re.compile(r"\A[0-9]{1,20}\.[0-9]{1,20}\Z")
"""A Pusher connection id: two numbers joined by a dot."""
INFO_ATTRIBUTES = ("subscription_count", "user_count")


@attrs.frozen
class Event:
    """One event to publish: its ``channels``, ``name`` and string ``data``, the connection it
    skips (``socket_id``) and the counts to answer with (``info``)."""

    channels: tuple[Channel, ...]
    name: str
    data: str
    socket_id: str | None = None
    info: frozenset[str] = frozenset()


def _bad(message: str) -> RequestRefused:
    return RequestRefused(400, message)


def parse_info(text: object, *, presence_only: bool = False) -> frozenset[str]:
    """The attributes of an ``info`` parameter (``subscription_count,user_count``)."""
    if text is None or text == "":
        return frozenset()
    if not isinstance(text, str):
        raise _bad("info must be a comma-separated string of attributes")
    names = frozenset(part.strip() for part in text.split(",") if part.strip())
    unknown = sorted(names - set(INFO_ATTRIBUTES))
    if unknown:
        raise _bad(
            f"Unknown info attribute(s): {', '.join(repr(name[:40]) for name in unknown[:5])};"
            f" use {', '.join(INFO_ATTRIBUTES)}"
        )
    return names


def check_info(channel: Channel, info: frozenset[str]) -> None:
    """``user_count`` is a presence channel's alone (Pusher refuses it for others)."""
    if "user_count" in info and not channel.is_presence:
        raise _bad(
            f"Cannot retrieve user_count for non-presence channel {channel.name!r}: "
            "only presence- channels have users"
        )


def parse_channel(name: object) -> Channel:
    if not isinstance(name, str):
        raise _bad(f"A channel name is a string, not {type(name).__name__}")
    try:
        return Channel.of(name)
    except InvalidChannel as exc:
        raise _bad(f"Invalid channel name {name[:200]!r}: {exc.reason}") from None


def parse_socket_id(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not SOCKET_ID.match(value):
        shown = value[:40] if isinstance(value, str) else value
        raise _bad(f"Invalid socket_id {shown!r}: a socket id is two numbers joined by '.'")
    return value


def parse_event(
    item: object, *, max_data_bytes: int = MAX_DATA_BYTES, batch: bool = False
) -> Event:
    """One event from a request body (``batch``: one element of ``batch_events``, which names
    one ``channel``; else ``channels`` (1 to ``MAX_CHANNELS``) or ``channel``).

    Raises ``RequestRefused`` (400, 413 when ``data`` is over ``max_data_bytes``).
    """
    if not isinstance(item, Mapping):
        raise _bad("An event is a JSON object with name, data and channels")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise _bad("Missing parameter: name (the event name, a non-empty string)")
    if len(name) > MAX_EVENT_NAME:
        raise _bad(f"Event name too long: {len(name)} characters, over {MAX_EVENT_NAME}")
    if not name.isprintable():
        raise _bad(f"Event name {name[:40]!r} contains control characters")
    data = item.get("data")
    if data is None:
        raise _bad("Missing parameter: data (a string, often JSON)")
    if not isinstance(data, str):
        raise _bad(f"data must be a string (JSON-encode it), not {type(data).__name__}")
    size = len(data.encode("utf-8", "surrogatepass"))
    if size > max_data_bytes:
        raise RequestRefused(
            413, f"Payload too large: data is {size} bytes, over the limit of {max_data_bytes}"
        )
    channels = _channels(item, batch)
    socket_id = parse_socket_id(item.get("socket_id"))
    info = parse_info(item.get("info"))
    for channel in channels:
        check_info(channel, info)
    return Event(channels, name, data, socket_id, info)


def _channels(item: Mapping[str, object], batch: bool) -> tuple[Channel, ...]:
    if batch or "channels" not in item:
        if "channel" not in item:
            raise _bad("Missing parameter: channel" + ("" if batch else " or channels"))
        return (parse_channel(item["channel"]),)
    names = item["channels"]
    if not isinstance(names, list) or not names:
        raise _bad("channels must be a non-empty list of channel names")
    if len(names) > MAX_CHANNELS:
        raise _bad(f"Too many channels: {len(names)}, over the limit of {MAX_CHANNELS}")
    channels = tuple(dict.fromkeys(parse_channel(name) for name in names))
    return channels


def parse_batch(payload: object, *, max_data_bytes: int = MAX_DATA_BYTES) -> list[Event]:
    """The events of a ``batch_events`` body ``{"batch": [...]}`` (1 to ``MAX_BATCH``)."""
    if not isinstance(payload, Mapping) or not isinstance(payload.get("batch"), list):
        raise _bad('Missing parameter: batch (a body {"batch": [events]})')
    items = payload["batch"]
    if not items:
        raise _bad("batch is empty: send 1 to 10 events")
    if len(items) > MAX_BATCH:
        raise _bad(f"Batch too large: {len(items)} events, over the limit of {MAX_BATCH}")
    return [parse_event(item, max_data_bytes=max_data_bytes, batch=True) for item in items]
