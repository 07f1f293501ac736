"""Channels, their kinds, and the patterns that select them.

A channel name is one or more segments joined by dots (``user.42``, ``presence-chat.lobby``). A
segment is made of letters, digits and ``_ - = @ , ; :``. The kind follows from the prefix alone, so
every node and every client agree on it without configuration.

A pattern is a channel name in which a segment may hold wildcards: ``*`` stands for one or more
characters inside one segment (never a dot), ``**`` for one or more characters of any kind. So
``user.*`` matches ``user.1`` but not ``user.1.inbox`` nor ``users.1``; ``private-**`` matches every
channel that starts with ``private-``.
"""

from __future__ import annotations

import enum
import functools
import re
from functools import cached_property

import attrs

from .errors import InvalidChannel, InvalidPattern

MAX_CHANNEL_LENGTH = 164
"""Longest channel name accepted, in characters (Pusher's limit: names move between the two)."""

SEGMENT_CHARS = "A-Za-z0-9_\\-=@,;:"
_NAME = re.compile(rf"[{SEGMENT_CHARS}]+(?:\.[{SEGMENT_CHARS}]+)*")
_PATTERN = re.compile(rf"[{SEGMENT_CHARS}*]+(?:\.[{SEGMENT_CHARS}*]+)*")
_BAD_CHAR = re.compile(rf"[^{SEGMENT_CHARS}.]")


class ChannelKind(enum.StrEnum):
    """Who may subscribe: anyone, an authorized user, or an authorized user who is announced."""

    PUBLIC = "public"
    PRIVATE = "private"
    PRESENCE = "presence"


_KIND_PREFIXES: tuple[tuple[str, ChannelKind], ...] = (
    ("presence-", ChannelKind.PRESENCE),
    ("presence.", ChannelKind.PRESENCE),
    ("private-", ChannelKind.PRIVATE),
    ("private.", ChannelKind.PRIVATE),
    ("user.", ChannelKind.PRIVATE),
)


def kind_of(name: str) -> ChannelKind:
    """The kind a channel name has, from its prefix."""
    for prefix, kind in _KIND_PREFIXES:
        if name.startswith(prefix):
            return kind
    return ChannelKind.PUBLIC


def _explain_bad_name(name: str) -> str | None:
    """Why ``name`` is not a channel name, or None when it is one."""
    if not name:
        return "it is empty"
    if len(name) > MAX_CHANNEL_LENGTH:
        return f"it is {len(name)} characters long, over the limit of {MAX_CHANNEL_LENGTH}"
    bad = _BAD_CHAR.search(name)
    if bad:
        return (
            f"character {bad.group()!r} at index {bad.start()} is not allowed "
            "(letters, digits, '_-=@,;:' and '.' between segments)"
        )
    if not _NAME.fullmatch(name):
        return "segments between dots must not be empty"
    for prefix, _ in _KIND_PREFIXES:
        if name == prefix:
            return f"{prefix!r} needs a name after it"
    return None


def _validate_name(instance: Channel, attribute: attrs.Attribute[str], name: str) -> None:
    if not isinstance(name, str):
        raise InvalidChannel(name, f"a channel name is a str, not {type(name).__name__}")
    reason = _explain_bad_name(name)
    if reason:
        raise InvalidChannel(name, reason)


@attrs.frozen(cache_hash=True)
class Channel:
    """A validated channel name; ``Channel("user.1").kind`` is ``ChannelKind.PRIVATE``."""

    name: str = attrs.field(validator=_validate_name)

    @classmethod
    def of(cls, value: Channel | str) -> Channel:
        """Accept a channel or its name, the way every public API takes channels.

        Names seen recently are validated once: channels are immutable values, and the same
        few channels carry most messages.
        """
        if isinstance(value, Channel):
            return value
        return _channel_named(value) if isinstance(value, str) else cls(value)

    @property
    def kind(self) -> ChannelKind:
        return kind_of(self.name)

    @property
    def is_public(self) -> bool:
        return self.kind is ChannelKind.PUBLIC

    @property
    def is_presence(self) -> bool:
        return self.kind is ChannelKind.PRESENCE

    @property
    def owner(self) -> str | None:
        """The user a ``user.{id}`` channel belongs to: everything after ``user.``.

        ``user.john.doe`` belongs to user ``john.doe`` and to nobody else, not to ``john``.
        """
        if not self.name.startswith("user."):
            return None
        return self.name[len("user.") :]

    def __str__(self) -> str:
        return self.name


@functools.lru_cache(maxsize=65_536)
def _channel_named(name: str) -> Channel:
    return Channel(name)


def is_valid_name(name: str) -> bool:
    """Whether ``name`` is a channel name, without raising."""
    return isinstance(name, str) and _explain_bad_name(name) is None


def _compile_pattern(text: str) -> re.Pattern[str]:
    parts: list[str] = []
    for piece in re.split(r"(\*\*|\*)", text):
        if piece == "**":
            parts.append(".+")
        elif piece == "*":
            parts.append("[^.]+")
        else:
            parts.append(re.escape(piece))
    return re.compile("".join(parts))


def _validate_pattern(instance: ChannelPattern, attribute: attrs.Attribute[str], text: str) -> None:
    if not isinstance(text, str):
        raise InvalidPattern(text, f"a pattern is a str, not {type(text).__name__}")
    if not text:
        raise InvalidPattern(text, "it is empty")
    if len(text) > MAX_CHANNEL_LENGTH:
        raise InvalidPattern(text, f"it is longer than {MAX_CHANNEL_LENGTH} characters")
    if "***" in text:
        raise InvalidPattern(text, "'***' is ambiguous; use '*' (one segment) or '**' (any)")
    if not _PATTERN.fullmatch(text):
        bad = re.search(rf"[^{SEGMENT_CHARS}.*]", text)
        if bad:
            raise InvalidPattern(text, f"character {bad.group()!r} is not allowed")
        raise InvalidPattern(text, "segments between dots must not be empty")


@attrs.frozen(cache_hash=True)
class ChannelPattern:
    """A set of channel names written with ``*`` and ``**`` wildcards (see the module doc)."""

    text: str = attrs.field(validator=_validate_pattern)

    @cached_property
    def _regex(self) -> re.Pattern[str]:
        return _compile_pattern(self.text)

    @property
    def is_literal(self) -> bool:
        """A pattern without wildcards matches exactly one channel: its own text."""
        return "*" not in self.text

    def matches(self, channel: Channel | str) -> bool:
        name = channel.name if isinstance(channel, Channel) else channel
        return self._regex.fullmatch(name) is not None

    def __str__(self) -> str:
        return self.text
