"""Hypothesis strategies shared by the domain tests.

Channel names are built from the grammar rather than filtered out of random text, so every drawn
name is valid by construction and the tests state what the code must accept.
"""

from __future__ import annotations

import re
import string

from hypothesis import settings
from hypothesis import strategies as st

from tidings.domain import Channel, ChannelPattern, ConnectionRef

HEAVY = settings(max_examples=40, deadline=None)
"""For properties whose examples are costly to draw: keeps tests/domain well under 20 s."""

MAX_NAME = 164
SEGMENT_ALPHABET = string.ascii_letters + string.digits + "_-=@,;:"
PUNCTUATION = "_-=@,;:"
BARE_PREFIXES = frozenset({"presence-", "private-"})
"""Kind prefixes that are grammatical names by themselves and must be refused."""

BARE_KIND_WORDS = frozenset({"user", "presence", "private"})
"""Grammatical public names that ``Channel`` wrongly refuses today (see test_channel.py's
``test_a_bare_kind_word_without_its_dot_is_a_public_channel``); kept out of the shared strategies
so that this one bug fails the channel tests only, not every test that draws a channel."""

PRESENCE_PREFIXES = ("presence-", "presence.")
PRIVATE_PREFIXES = ("private-", "private.", "user.")
KIND_PREFIXES = PRESENCE_PREFIXES + PRIVATE_PREFIXES

segments = st.text(SEGMENT_ALPHABET, min_size=1, max_size=10)
punctuation_segments = st.text(PUNCTUATION, min_size=1, max_size=30)


def _fit(name: str) -> str:
    """Cut ``name`` to the length limit without leaving a trailing dot."""
    return name[:MAX_NAME].rstrip(".")


def _make_name(prefix: str, raw: str) -> str:
    body = re.sub(r"\.+", ".", raw).strip(".") or "a"  # no empty segments
    name = _fit(prefix + body)
    if name in BARE_PREFIXES | BARE_KIND_WORDS:
        name += "x"
    return name


def channel_names(
    alphabet: str = SEGMENT_ALPHABET, min_size: int = 1, max_size: int = 40, dots: int = 10
) -> st.SearchStrategy[str]:
    """Valid channel names: segments joined by dots, at most 164 chars, not a bare prefix.

    Drawn as one text over the segment characters and dots (dots weighted so that names have a
    few segments), with runs of dots collapsed; a kind prefix is added to half of them.
    """
    raw = st.text(st.sampled_from([*alphabet, *"." * dots]), min_size=min_size, max_size=max_size)
    return st.builds(_make_name, st.sampled_from(("",) * 5 + KIND_PREFIXES), raw)


long_channel_names = channel_names(min_size=150, max_size=200)
punctuation_names = channel_names(PUNCTUATION, min_size=50, max_size=150, dots=2)
any_channel_names = st.one_of(channel_names(), long_channel_names, punctuation_names)
channels = any_channel_names.map(Channel)

# JSON-native values: what ``json.loads`` can give back exactly. Integers of any size, and often
# those at the edges of 64 bits, where a fast decoder may turn them into floats (ADR 0040).
_EDGES_OF_64_BITS = (-(2**63) - 1, -(2**63), 2**63 - 1, 2**63, 2**64 - 1, 2**64)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63)
    | st.integers()
    | st.sampled_from(_EDGES_OF_64_BITS)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_keys = st.text(max_size=6)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(json_keys, inner, max_size=3),
    max_leaves=8,
)
json_objects = st.dictionaries(json_keys, json_values, max_size=4)

# Event names: printable text (letters, marks, numbers, punctuation, symbols and the space).
printable_chars = st.characters(categories=("L", "M", "N", "P", "S")) | st.just(" ")
event_names = st.text(printable_chars, min_size=1, max_size=200)


@st.composite
def _wildcard_segment(draw: st.DrawFn, segment: str) -> str:
    choice = draw(st.sampled_from(("keep", "keep", "star", "stars", "head", "tail")))
    if choice == "star":
        return "*"
    if choice == "stars":
        return "**"
    if choice == "head" and len(segment) > 1:  # "abc" -> "a*": the star covers "bc"
        return segment[: draw(st.integers(1, len(segment) - 1))] + "*"
    if choice == "tail" and len(segment) > 1:  # "abc" -> "*c"
        return "*" + segment[draw(st.integers(1, len(segment) - 1)) :]
    return segment


@st.composite
def patterns_matching(draw: st.DrawFn, name: str) -> ChannelPattern:
    """A pattern that must match ``name``: some segments turned into wildcards."""
    parts = [draw(_wildcard_segment(part)) for part in name.split(".")]
    return ChannelPattern(".".join(parts))


@st.composite
def names_and_patterns(draw: st.DrawFn) -> tuple[str, ChannelPattern]:
    """A channel name and a pattern derived from it that must match it."""
    name = draw(channel_names())
    return name, draw(patterns_matching(name))


@st.composite
def patterns(draw: st.DrawFn) -> ChannelPattern:
    return draw(names_and_patterns())[1]


# Presence: small universes so that users, nodes and connections collide often.
user_ids = st.sampled_from(["u0", "u1", "u2", "u3"])
node_ids = st.sampled_from(["n0", "n1", "n2"])
connection_refs = st.builds(ConnectionRef, node_ids, st.sampled_from(["c0", "c1", "c2"]))
user_infos = st.one_of(
    st.none(),
    st.integers(0, 2),
    st.sampled_from([{"name": "ann"}, {"name": "bob"}, {"name": "ann", "age": 3}, ["x"], "ann"]),
    st.dictionaries(st.sampled_from(["a", "b"]), st.integers(0, 1) | st.text(max_size=2)),
)
presence_entries = st.lists(st.tuples(user_ids, connection_refs, user_infos), max_size=8)
