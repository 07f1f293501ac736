"""Resume positions: where in its ordered log a delivered message sits.

Every channel lives in one ordered log (a Kafka partition, or a per-channel sequence on the memory
broker), called its stream. A position is the stream's identity and the message's offset in it.
Clients see it as an opaque string and hand it back to resume: ``since`` a position means "I have
everything up to and including it". A position may also stand before the first message of a
stream (offset -1): that is what a client subscribing to a still empty channel is told. The
stream part of the text is a short hash of what identifies the log (cluster, topic, partition, or
the memory broker's epoch), so a position from another cluster, topic or broker run is recognised
and refused instead of resuming from a wrong place.
"""

from __future__ import annotations

import hashlib
import re

import attrs

from .errors import InvalidPosition

_TEXT = re.compile(r"([0-9a-f]{12})-(0|[1-9][0-9]{0,18})")
# The text holds offset + 1, so the position before a stream's first message is "{stream}-0".


def stream_id(*parts: str | int) -> str:
    """A short, stable identity for an ordered log, from the values that name it."""
    digest = hashlib.blake2b("\x1f".join(map(str, parts)).encode(), digest_size=6)
    return digest.hexdigest()


@attrs.frozen(order=True)
class Position:
    """An offset in a stream; positions of one stream are totally ordered by offset."""

    stream: str
    offset: int = attrs.field()

    @offset.validator
    def _check_offset(self, attribute: attrs.Attribute[int], offset: int) -> None:
        if offset < -1:
            raise InvalidPosition(f"offset {offset} is before the start of any stream")

    @classmethod
    def parse(cls, text: object) -> Position:
        """Decode a client's position; raises ``InvalidPosition`` naming the bad value."""
        if not isinstance(text, str):
            raise InvalidPosition(f"a position is a string, not {type(text).__name__}")
        match = _TEXT.fullmatch(text)
        if not match:
            raise InvalidPosition(f"{text[:80]!r} is not a position this server issued")
        return cls(match.group(1), int(match.group(2)) - 1)

    def __str__(self) -> str:
        return f"{self.stream}-{self.offset + 1}"
