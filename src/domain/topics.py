"""Where a channel's messages live in Kafka: the topic-mapping strategies.

**Per channel** (the seed's naming, the default): channel ``user.1`` is topic ``realtime_user_1``.
Dots become underscores, and every other character that could make two channels share a topic is
escaped with ``-``: ``-`` becomes ``--``, ``_`` becomes ``-_`` and ``= @ , ; :`` become ``-`` plus
two hex digits. The code is prefix-free, so the mapping is injective (``user:1`` and ``user_1`` get
different topics, unlike the original system) and reversible. Topics never contain ``.``, so Kafka's
rule that ``a.b`` and ``a_b`` collide cannot bite.

**Shared** (for many channels): a fixed set of ``count`` topics named ``{prefix}-shared-{i}``; a
channel lives in topic ``crc32(name) % count`` and is the record key, so one channel's messages stay
in one partition, in order. Gateways read a few topics whatever the number of channels.

The two strategies never produce the same topic name for one prefix: per-channel topics start with
``{prefix}_``, shared ones with ``{prefix}-``.

**The topic is the authority** (``topic_carries``, ADR 0016): a record is delivered only when the
channel its envelope names maps to the topic it was read from (and, for shared topics, the record
is keyed by that channel). Kafka grants write access per topic; without this rule a writer of one
topic could reach any channel by naming it in the envelope.
"""

from __future__ import annotations

import functools
import re
import zlib
from typing import ClassVar, Protocol

import attrs

from .channel import Channel
from .errors import ConfigurationError, InvalidChannel, InvalidTopicName

MAX_TOPIC_LENGTH = 249
"""Kafka's limit on a topic name."""

_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")
_PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")
_ENCODE = {".": "_", "-": "--", "_": "-_"}
_DECODE_ESCAPE = {"-": "-", "_": "_"}


def _validate_prefix(instance: object, attribute: attrs.Attribute[str], prefix: str) -> None:
    if not _PREFIX.fullmatch(prefix) or len(prefix) > 100:
        raise ConfigurationError(
            f"KAFKA_TOPIC_PREFIX {prefix!r} must be 1-100 letters, digits, '_' or '-', "
            "starting with a letter or digit (no '.': Kafka treats '.' and '_' as colliding)"
        )


@functools.lru_cache(maxsize=65_536)
def encode_channel(name: str) -> str:
    """The topic-safe spelling of a channel name (the part after ``{prefix}_``)."""
    out: list[str] = []
    for char in name:
        if char in _PLAIN:
            out.append(char)
        else:
            out.append(_ENCODE.get(char) or f"-{ord(char):02x}")
    return "".join(out)


def decode_channel(text: str) -> str:
    """The inverse of ``encode_channel``; raises ``ValueError`` on text it cannot have produced."""
    out: list[str] = []
    i = 0
    while i < len(text):
        char = text[i]
        if char == "_":
            out.append(".")
            i += 1
        elif char == "-":
            nxt = text[i + 1 : i + 2]
            if nxt in _DECODE_ESCAPE:
                out.append(_DECODE_ESCAPE[nxt])
                i += 2
            else:
                hex_digits = text[i + 1 : i + 3]
                if len(hex_digits) != 2 or not re.fullmatch(r"[0-9a-f]{2}", hex_digits):
                    raise ValueError(f"bad escape at index {i} of {text!r}")
                out.append(chr(int(hex_digits, 16)))
                i += 3
        else:
            out.append(char)
            i += 1
    return "".join(out)


class TopicStrategy(Protocol):
    """How channels map to topics; the Kafka adapters depend on nothing else."""

    @property
    def prefix(self) -> str: ...

    @property
    def keyed(self) -> bool:
        """Whether a topic carries several channels, told apart by the record key (the channel
        name), so a record must also be keyed by the channel its envelope names."""
        ...

    def topic_for(self, channel: Channel) -> str: ...

    def owns(self, topic: str) -> bool:
        """Whether ``topic`` holds channel messages under this strategy."""
        ...

    def subscription_pattern(self) -> str:
        """A regular expression that matches exactly the topics this strategy writes."""
        ...

    def fixed_topics(self) -> list[str] | None:
        """Every topic this strategy writes, when that is a fixed set known up front; None
        when topics come and go with channels (readers of all then subscribe by pattern)."""
        ...


@attrs.frozen
class PerChannelTopics:
    """One topic per channel, named as in the seed: ``user.1`` -> ``realtime_user_1``."""

    prefix: str = attrs.field(default="realtime", validator=_validate_prefix)
    keyed: ClassVar[bool] = False

    def topic_for(self, channel: Channel) -> str:
        topic = f"{self.prefix}_{encode_channel(channel.name)}"
        if len(topic) > MAX_TOPIC_LENGTH:
            raise InvalidTopicName(
                f"channel {channel.name!r} maps to a topic of {len(topic)} characters, over "
                f"Kafka's {MAX_TOPIC_LENGTH}; use a shorter name or KAFKA_TOPIC_STRATEGY=shared"
            )
        return topic

    def channel_for(self, topic: str) -> Channel:
        """The channel a topic of this strategy carries; raises ``ValueError`` for other topics."""
        head = f"{self.prefix}_"
        if not topic.startswith(head):
            raise ValueError(f"topic {topic!r} does not start with {head!r}")
        encoded = topic[len(head) :]
        name = decode_channel(encoded)
        if encode_channel(name) != encoded:
            raise ValueError(f"topic {topic!r} is not in the canonical per-channel spelling")
        return Channel(name)

    def owns(self, topic: str) -> bool:
        try:
            self.channel_for(topic)
        except ValueError:
            return False
        return True

    def subscription_pattern(self) -> str:
        return f"^{re.escape(self.prefix)}_[A-Za-z0-9_-]+$"

    def fixed_topics(self) -> None:
        return None


@attrs.frozen
class SharedTopics:
    """A fixed set of topics keyed by channel, for deployments with many channels."""

    prefix: str = attrs.field(default="realtime", validator=_validate_prefix)
    count: int = attrs.field(default=1)
    keyed: ClassVar[bool] = True

    @count.validator
    def _check_count(self, attribute: attrs.Attribute[int], count: int) -> None:
        if not 1 <= count <= 1000:
            raise ConfigurationError(f"KAFKA_SHARED_TOPICS must be between 1 and 1000, not {count}")

    def fixed_topics(self) -> list[str]:
        return [f"{self.prefix}-shared-{index}" for index in range(self.count)]

    def topic_for(self, channel: Channel) -> str:
        index = zlib.crc32(channel.name.encode()) % self.count
        return f"{self.prefix}-shared-{index}"

    def owns(self, topic: str) -> bool:
        return topic in self.fixed_topics()

    def subscription_pattern(self) -> str:
        indexes = "|".join(str(index) for index in range(self.count))
        return f"^{re.escape(self.prefix)}-shared-({indexes})$"


def topic_carries(strategy: TopicStrategy, topic: str, key: bytes | None, channel: str) -> bool:
    """Whether a record read from ``topic`` with record key ``key`` may deliver a message of
    ``channel`` (the name its envelope gives).

    It may when ``channel`` is a valid name whose topic under ``strategy`` is ``topic``; with a
    keyed strategy (shared topics) the record must also be keyed by the channel's name, as the
    publisher writes it. Anything else, including a name that is no channel at all, is refused:
    the envelope does not get to say where a record belongs, the topic does.
    """
    try:
        expected = strategy.topic_for(Channel(channel))
    except (InvalidChannel, InvalidTopicName):
        return False
    if expected != topic:
        return False
    return not strategy.keyed or key == channel.encode()


STRATEGIES = ("per-channel", "shared")


def topic_strategy(name: str, prefix: str = "realtime", shared_topics: int = 1) -> TopicStrategy:
    """The strategy configured by ``KAFKA_TOPIC_STRATEGY``; unknown names are a clear error."""
    if name == "per-channel":
        return PerChannelTopics(prefix)
    if name == "shared":
        return SharedTopics(prefix, shared_topics)
    raise ConfigurationError(
        f"KAFKA_TOPIC_STRATEGY {name!r} is unknown; known strategies: {', '.join(STRATEGIES)}"
    )


def presence_topic(prefix: str) -> str:
    """The compacted topic where gateways share who is present (never a channel topic)."""
    return f"{prefix}-presence"
