"""The message envelope: the same JSON object on the broker and on the wire to clients.

Field names follow the original PHP system (``id``, ``type``, ``channel``, ``event``, ``data``,
``timestamp``) so a PHP publisher and a tidings gateway can share a topic. Two optional fields are
ours: ``exclude``, the connection that must not receive a message (its sender), and ``user_id``,
the verified user who sent a client event. Decoding ignores fields it does not
know, so newer publishers can add some without breaking older gateways.
"""

from __future__ import annotations

import enum
import json
import math
import os
import random
import time
from collections.abc import Callable
from typing import Any, Self, TypeAlias, overload

import attrs

from .channel import Channel
from .errors import InvalidChannel, InvalidMessage, MessageTooLarge

JSON: TypeAlias = Any
"""A value that JSON can represent: dict, list, str, int, float, bool or None."""

MAX_EVENT_LENGTH = 200
MAX_ID_LENGTH = 128


class MessageType(enum.StrEnum):
    EVENT = "event"


_MESSAGE_TYPES = {kind.value: kind for kind in MessageType}


def _validate_event(instance: Message, attribute: attrs.Attribute[str], event: str) -> None:
    if not isinstance(event, str):
        raise InvalidMessage(f"event name must be a str, not {type(event).__name__}")
    if not event:
        raise InvalidMessage(f"event name for channel {instance.channel.name!r} is empty")
    if len(event) > MAX_EVENT_LENGTH:
        raise InvalidMessage(
            f"event name {event[:40]!r}... is {len(event)} characters, over {MAX_EVENT_LENGTH}"
        )
    if not event.isprintable():
        raise InvalidMessage(f"event name {event!r} contains control characters")


def _validate_id(instance: Message, attribute: attrs.Attribute[str], value: str) -> None:
    if (
        not isinstance(value, str)
        or not value
        or len(value) > MAX_ID_LENGTH
        or not value.isprintable()
    ):
        raise InvalidMessage(
            f"message id must be printable text of 1 to {MAX_ID_LENGTH} characters, not {value!r}"
        )


def _validate_exclude(instance: Message, attribute: attrs.Attribute[str], value: str) -> None:
    if value is not None:
        _validate_id(instance, attribute, value)


def _validate_timestamp(instance: Message, attribute: attrs.Attribute[float], value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise InvalidMessage(f"timestamp must be a finite number of seconds, not {value!r}")


_data_encoder = json.JSONEncoder(ensure_ascii=False, allow_nan=False, separators=(",", ":"))
"""One encoder for every message: ``json.dumps`` with these options builds a new one per call."""


def _encode_data(channel: str, data: JSON) -> str:
    try:
        text = _data_encoder.encode(data)
        text.encode()  # a lone surrogate is valid in a str but not in UTF-8 on the wire
    except (TypeError, ValueError, RecursionError) as exc:
        reason = "it is nested too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise InvalidMessage(
            f"data for channel {channel!r} is not JSON-serialisable: {reason}"
        ) from None
    return text


_string: Callable[[str], str] = json.encoder.encode_basestring
"""A str as a JSON string literal, non-ASCII kept (C-accelerated in CPython)."""


def _plainly_encodable(text: str | bytes) -> bool:
    """Whether JSON text cannot decode to a lone surrogate (which UTF-8 cannot carry)."""
    if isinstance(text, str):
        try:
            text = text.encode()
        except UnicodeEncodeError:
            return False
    return b"\\ud" not in text and b"\\uD" not in text


def _refuse_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in JSON")


def _to_channel(value: Channel | str) -> Channel:
    return Channel.of(value)


_ids = random.Random()
os.register_at_fork(after_in_child=_ids.seed)


def _new_id() -> str:
    """128 random bits in hex, like a UUID4's, from a Mersenne Twister of our own.

    Ids must be unique, not secret; ``uuid4`` reads ``os.urandom`` each time, which costs
    ~130 us on some virtual machines and was the largest cost of a broadcast there. The
    generator is seeded from the OS at start and again in every forked child.
    """
    return f"{_ids.getrandbits(128):032x}"


@attrs.frozen(eq=True)
class _Envelope:
    """The fields and codec of ``Message``; see ``Message`` for why there are two classes."""

    channel: Channel = attrs.field(converter=_to_channel)
    event: str = attrs.field(validator=_validate_event)
    data: JSON = None
    id: str = attrs.field(factory=_new_id, validator=_validate_id)
    type: MessageType = MessageType.EVENT
    timestamp: float = attrs.field(factory=time.time, validator=_validate_timestamp)
    exclude: str | None = attrs.field(default=None, validator=_validate_exclude)
    """Connection id that must not receive this message (the sender of a client event)."""
    user_id: str | None = attrs.field(default=None, validator=_validate_exclude)
    """The user who sent a client event, from their verified token; None for broadcasts."""

    _data_json: str | None = attrs.field(default="", alias="data_json", eq=False, repr=False)
    """The data as JSON: "" (the default) to encode and so validate it now; None when it was
    just decoded from JSON, so it is JSON already and is encoded only if it is sent on."""
    _json: str | None = attrs.field(init=False, default=None, eq=False, repr=False)
    _client_json: str | None = attrs.field(init=False, default=None, eq=False, repr=False)
    _bytes: bytes | None = attrs.field(init=False, default=None, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        # Encoding the data once proves it is JSON and gives the text every later encode reuses.
        if self._data_json == "":
            object.__setattr__(self, "_data_json", _encode_data(self.channel.name, self.data))

    def to_dict(self) -> dict[str, JSON]:
        envelope: dict[str, JSON] = {
            "id": self.id,
            "type": self.type.value,
            "channel": self.channel.name,
            "event": self.event,
            "data": self.data,
            "timestamp": self.timestamp,
        }
        if self.exclude is not None:
            envelope["exclude"] = self.exclude
        if self.user_id is not None:
            envelope["user_id"] = self.user_id
        return envelope

    def to_json(self, *, extra: str = "", for_client: bool = False) -> str:
        """The envelope as compact JSON; ``extra`` is pre-encoded ``,"key":value`` text to append.

        Encoded once and kept (a message is immutable), so publishing, sizing and delivering it
        to any number of clients cost one encoding. ``for_client`` leaves out ``exclude``: the
        sender's connection id is nobody else's business.
        """
        text = self._client_json if for_client else self._json
        if text is None:
            text = self._encode(for_client)
            object.__setattr__(self, "_client_json" if for_client else "_json", text)
        return f"{text[:-1]}{extra}}}" if extra else text

    def _encode(self, for_client: bool) -> str:
        data_json = self._data_json
        if data_json is None:
            data_json = _encode_data(self.channel.name, self.data)
            object.__setattr__(self, "_data_json", data_json)
        # Field by field with the json module's own string encoder: the same text as
        # json.dumps of the dict, at a fraction of the cost (this runs for every message).
        parts = [
            '{"id":', _string(self.id),
            ',"type":', _string(self.type.value),
            ',"channel":', _string(self.channel.name),
            ',"event":', _string(self.event),
            ',"data":', data_json,
            ',"timestamp":', repr(self.timestamp),
        ]  # fmt: skip
        if self.exclude is not None and not for_client:
            parts += (',"exclude":', _string(self.exclude))
        if self.user_id is not None:
            parts += (',"user_id":', _string(self.user_id))
        parts.append("}")
        return "".join(parts)

    def to_bytes(self) -> bytes:
        encoded = self._bytes
        if encoded is None:
            encoded = self.to_json().encode()
            object.__setattr__(self, "_bytes", encoded)
        return encoded

    @property
    def size(self) -> int:
        """The size of the encoded envelope in bytes."""
        return len(self.to_bytes())

    def check_size(self, limit: int) -> Self:
        """Return self, or raise ``MessageTooLarge`` when the encoding is over ``limit`` bytes."""
        size = self.size
        if size > limit:
            raise MessageTooLarge(self.channel.name, size, limit)
        return self

    @classmethod
    def from_dict(
        cls, envelope: object, *, trusted: bool = False, data_json: str | None = None
    ) -> Self:
        """A message from a decoded envelope. ``trusted``: the dict came straight from JSON
        text, so its data is JSON already and is not encoded again until it is sent on (or
        ``data_json``, that JSON text, is used when it is sent on).

        A trusted envelope is built field by field, with the same checks as the constructor:
        this runs for every message a gateway delivers from the broker, and attrs' generic
        ``__init__`` (a converter, five validators, a post-init) cost twice as much.
        """
        if not isinstance(envelope, dict):
            raise InvalidMessage(f"an envelope is a JSON object, not {type(envelope).__name__}")
        if "id" not in envelope or "channel" not in envelope or "event" not in envelope:
            missing = [key for key in ("id", "channel", "event") if key not in envelope]
            raise InvalidMessage(f"envelope lacks {', '.join(missing)}")
        kind = envelope.get("type", MessageType.EVENT.value)
        message_type = _MESSAGE_TYPES.get(kind) if isinstance(kind, str) else None
        if message_type is None:
            raise InvalidMessage(f"unknown message type {kind!r}")
        exclude = envelope.get("exclude")
        if exclude is not None and not isinstance(exclude, str):
            raise InvalidMessage(f"exclude must be a connection id string, not {exclude!r}")
        user_id = envelope.get("user_id")
        if user_id is not None and not isinstance(user_id, str):
            raise InvalidMessage(f"user_id must be a string, not {user_id!r}")
        try:
            channel = Channel.of(envelope["channel"])
        except InvalidChannel as exc:
            raise InvalidMessage(str(exc)) from exc
        if not trusted:
            return cls(
                channel=channel,
                event=envelope["event"],
                data=envelope.get("data"),
                id=envelope["id"],
                type=message_type,
                timestamp=envelope.get("timestamp", 0),
                exclude=exclude,
                user_id=user_id,
                data_json="",
            )
        message = object.__new__(cls)
        put = object.__setattr__
        put(message, "channel", channel)
        put(message, "event", envelope["event"])
        put(message, "data", envelope.get("data"))
        put(message, "id", envelope["id"])
        put(message, "type", message_type)
        put(message, "timestamp", envelope.get("timestamp", 0))
        put(message, "exclude", exclude)
        put(message, "user_id", user_id)
        put(message, "_data_json", data_json)
        put(message, "_json", None)
        put(message, "_client_json", None)
        put(message, "_bytes", None)
        built: Any = message  # the validators' instance and fields, as attrs passes them
        fields: Any = _FIELDS
        _validate_event(built, fields.event, built.event)
        _validate_id(built, fields.id, built.id)
        _validate_timestamp(built, fields.timestamp, built.timestamp)
        if exclude is not None:
            _validate_id(built, fields.exclude, exclude)
        if user_id is not None:
            _validate_id(built, fields.user_id, user_id)
        return message

    @classmethod
    def from_json(cls, text: str | bytes) -> Self:
        """Decode an envelope; raises ``InvalidMessage`` naming what was wrong."""
        try:
            envelope = json.loads(text, parse_constant=_refuse_constant)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidMessage(f"envelope is not valid JSON: {exc}") from None
        except RecursionError:
            raise InvalidMessage("envelope is nested too deeply") from None
        # Decoded JSON is JSON, unless it escapes a lone surrogate: only then check it all.
        return cls.from_dict(envelope, trusted=_plainly_encodable(text))


_FIELDS = attrs.fields(_Envelope)
"""The envelope's fields, for the validators ``from_dict`` calls itself."""


def _new_event(
    cls: type[Message],
    channel: Channel | str,
    event: str,
    data: JSON = None,
    *,
    exclude: str | None = None,
) -> Message:
    return cls(channel=Channel.of(channel), event=event, data=data, exclude=exclude)


EventFactory = Callable[..., "Message"]


class _EventNameOrFactory:
    """``Message.event(...)`` is the seed's factory; ``message.event`` is the event name.

    Python cannot hold a class method and a field under one name, so this descriptor answers
    with the factory on the class and with the field's value on an instance.
    """

    def __init__(self, field: Any) -> None:
        self._field = field

    @overload
    def __get__(self, instance: None, owner: type[Message]) -> EventFactory: ...

    @overload
    def __get__(self, instance: Message, owner: type[Message]) -> str: ...

    def __get__(self, instance: Message | None, owner: type[Message]) -> EventFactory | str:
        if instance is None:
            factory: EventFactory = _new_event.__get__(owner, owner)
            return factory
        value: str = self._field.__get__(instance, owner)
        return value

    def __set__(self, instance: Message, value: str) -> None:
        self._field.__set__(instance, value)


class Message(_Envelope):
    """One event on one channel, as in the seed: ``Message.event(channel, event, data)``.

    ``message.event`` is the event name; ``Message.event(...)`` builds a message with a fresh id
    and the current time. Validation happens on construction (``InvalidMessage``,
    ``InvalidChannel``), so a ``Message`` that exists is a valid envelope.
    """

    __slots__ = ()

    event = _EventNameOrFactory(_Envelope.__dict__["event"])
