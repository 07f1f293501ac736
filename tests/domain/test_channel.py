"""Channels, their kinds and owners, and channel patterns."""

from __future__ import annotations

import re
from functools import cache

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from tests.domain.strategies import (
    BARE_PREFIXES,
    HEAVY,
    MAX_NAME,
    SEGMENT_ALPHABET,
    any_channel_names,
    channel_names,
    names_and_patterns,
    segments,
)
from tidings.domain import Channel, ChannelKind, ChannelPattern
from tidings.domain.channel import is_valid_name, kind_of
from tidings.domain.errors import InvalidChannel, InvalidPattern

# An independent spelling of the grammar, used as the oracle for validity.
_GRAMMAR = re.compile(r"[A-Za-z0-9_\-=@,;:]+(\.[A-Za-z0-9_\-=@,;:]+)*")


def reference_valid(name: str) -> bool:
    return (
        len(name) <= MAX_NAME and _GRAMMAR.fullmatch(name) is not None and name not in BARE_PREFIXES
    )


def reference_kind(name: str) -> ChannelKind:
    """The kind by the design's prefix rules, written in terms of the first segment."""
    first, dot, _ = name.partition(".")
    if first.startswith("presence-") or (first == "presence" and dot):
        return ChannelKind.PRESENCE
    if first.startswith("private-") or (first in ("private", "user") and dot):
        return ChannelKind.PRIVATE
    return ChannelKind.PUBLIC


# --- names ------------------------------------------------------------------------------------


@given(any_channel_names)
def test_every_grammatical_name_is_accepted_and_round_trips(name: str) -> None:
    channel = Channel(name)
    assert channel.name == name
    assert str(channel) == name
    assert is_valid_name(name)
    assert Channel.of(name) == channel
    assert hash(Channel(name)) == hash(channel)


@given(any_channel_names)
def test_channel_of_returns_channels_unchanged(name: str) -> None:
    channel = Channel(name)
    assert Channel.of(channel) is channel


INVALID_NAMES = [
    ("", "empty"),
    ("a" * (MAX_NAME + 1), "165"),
    ("a." + "b" * (MAX_NAME - 1), "165"),
    ("chat room", "' '"),
    ("chat/room", "'/'"),
    ("chat#1", "'#'"),
    ("chat.*", "'*'"),
    ("caf\u00e9", "'\u00e9'"),
    ("\u0434\u043e\u043c", "'\u0434'"),
    ("tab\there", "'\\t'"),
    ("a..b", "empty"),
    (".a", "empty"),
    ("a.", "empty"),
    (".", "empty"),
    ("presence-", "presence-"),
    ("private-", "private-"),
]


@pytest.mark.parametrize(("name", "fragment"), INVALID_NAMES)
def test_invalid_names_raise_naming_the_name_and_the_reason(name: str, fragment: str) -> None:
    with pytest.raises(InvalidChannel) as info:
        Channel(name)
    error = info.value
    assert repr(name) in str(error)
    assert error.name == name
    assert error.reason
    assert error.reason in str(error)
    assert fragment in error.reason
    assert not is_valid_name(name)
    assert isinstance(error, ValueError)


@pytest.mark.parametrize("value", [None, 5, 1.5, b"user.1", ["user.1"], {"name": "a"}])
def test_non_str_names_raise_invalid_channel(value: object) -> None:
    with pytest.raises(InvalidChannel) as info:
        Channel(value)  # type: ignore[arg-type]
    assert repr(value) in str(info.value)
    assert type(value).__name__ in info.value.reason
    assert not is_valid_name(value)  # type: ignore[arg-type]


def test_the_length_limit_is_inclusive() -> None:
    assert Channel("a" * MAX_NAME).name == "a" * MAX_NAME


near_grammar_text = st.text(SEGMENT_ALPHABET[:6] + "-=:. /#*\u00e9\n", max_size=12) | st.text(
    max_size=8
)


@example("user.1")
@example("presence-")
@example("a..b")
@example("user")
@given(near_grammar_text)
def test_is_valid_name_agrees_with_construction_and_with_the_grammar(text: str) -> None:
    try:
        Channel(text)
    except InvalidChannel as error:
        constructed = False
        assert repr(text) in str(error)
    else:
        constructed = True
    assert is_valid_name(text) == constructed
    assert constructed == reference_valid(text)


@given(st.integers(MAX_NAME + 1, MAX_NAME + 50))
def test_every_name_over_the_limit_is_refused(length: int) -> None:
    name = ("ab." * length)[:length].rstrip(".") + "c"
    with pytest.raises(InvalidChannel, match=str(len(name))):
        Channel(name)


# --- kinds ------------------------------------------------------------------------------------

PREFIX_KINDS = {
    "presence-": ChannelKind.PRESENCE,
    "presence.": ChannelKind.PRESENCE,
    "private-": ChannelKind.PRIVATE,
    "private.": ChannelKind.PRIVATE,
    "user.": ChannelKind.PRIVATE,
}
NEAR_MISS_PREFIXES = [
    "",
    "presencex",
    "presence_",
    "Presence-",
    "presences.",
    "privateer",
    "private_",
    "Private.",
    "user-",
    "users.",
    "User.",
    "user_",
    "xuser.",
    "xpresence-",
    "u.",
]


@given(st.sampled_from(sorted(PREFIX_KINDS)), segments)
def test_kind_follows_the_prefix(prefix: str, rest: str) -> None:
    channel = Channel(prefix + rest)
    assert channel.kind is PREFIX_KINDS[prefix]
    assert channel.is_public is False
    assert channel.is_presence is (PREFIX_KINDS[prefix] is ChannelKind.PRESENCE)


@given(st.sampled_from(NEAR_MISS_PREFIXES), segments)
def test_near_miss_prefixes_are_public(prefix: str, rest: str) -> None:
    name = prefix + rest
    assume(reference_kind(name) is ChannelKind.PUBLIC)  # e.g. "" + "user" + ... handled above
    channel = Channel(name)
    assert channel.kind is ChannelKind.PUBLIC
    assert channel.is_public
    assert not channel.is_presence


@given(any_channel_names)
def test_kind_agrees_with_the_segment_based_reference(name: str) -> None:
    assert Channel(name).kind is reference_kind(name)
    assert kind_of(name) is reference_kind(name)


@pytest.mark.parametrize(
    "name", ["presencex", "users.1", "privateer", "User.1", "Presence-chat", "user-1", "chat"]
)
def test_near_misses_are_public(name: str) -> None:
    assert Channel(name).kind is ChannelKind.PUBLIC


@pytest.mark.parametrize("name", ["user", "presence", "private"])
def test_a_bare_kind_word_without_its_dot_is_a_public_channel(name: str) -> None:
    # The kind prefixes are "user.", "presence." and "private."; the word alone has no prefix,
    # is grammatical, and so is an ordinary public channel.
    assert Channel(name).kind is ChannelKind.PUBLIC
    assert is_valid_name(name)


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("presence-chat.lobby", ChannelKind.PRESENCE),
        ("presence.room", ChannelKind.PRESENCE),
        ("private-orders", ChannelKind.PRIVATE),
        ("private.orders.7", ChannelKind.PRIVATE),
        ("user.42", ChannelKind.PRIVATE),
        ("news", ChannelKind.PUBLIC),
    ],
)
def test_kind_examples(name: str, kind: ChannelKind) -> None:
    assert Channel(name).kind is kind


# --- owners -----------------------------------------------------------------------------------


@given(segments, st.lists(segments, max_size=3))
def test_owner_of_a_user_channel_is_everything_after_user(user_id: str, rest: list[str]) -> None:
    # user.john.doe belongs to "john.doe", never to "john": an owner is matched exactly.
    name = ".".join(["user", user_id, *rest])
    assert Channel(name).owner == ".".join([user_id, *rest])


@given(any_channel_names)
def test_only_user_channels_have_an_owner(name: str) -> None:
    owner = Channel(name).owner
    if name.startswith("user."):
        assert owner == name.removeprefix("user.")
    else:
        assert owner is None


@pytest.mark.parametrize("name", ["users.1", "User.1", "presence-user.1", "private.user.1", "x"])
def test_owner_is_none_for_other_channels(name: str) -> None:
    assert Channel(name).owner is None


# --- patterns ---------------------------------------------------------------------------------


@cache
def oracle_matches(pattern: str, name: str) -> bool:
    """A backtracking matcher for the pattern grammar, independent of the regex translation."""
    if not pattern:
        return not name
    if pattern.startswith("**"):
        return any(oracle_matches(pattern[2:], name[k:]) for k in range(1, len(name) + 1))
    if pattern[0] == "*":
        return any(
            oracle_matches(pattern[1:], name[k:])
            for k in range(1, len(name) + 1)
            if "." not in name[:k]
        )
    return bool(name) and name[0] == pattern[0] and oracle_matches(pattern[1:], name[1:])


@HEAVY
@given(any_channel_names, any_channel_names)
def test_a_literal_pattern_matches_exactly_its_own_text(name: str, other: str) -> None:
    pattern = ChannelPattern(name)
    assert pattern.is_literal
    assert pattern.matches(name)
    assert pattern.matches(Channel(name))
    assert pattern.matches(other) == (other == name)


@HEAVY
@given(names_and_patterns())
def test_a_pattern_derived_from_a_name_matches_it(case: tuple[str, ChannelPattern]) -> None:
    name, pattern = case
    assert pattern.matches(name)
    assert pattern.matches(Channel(name))


@given(channel_names(), st.data())
def test_replacing_any_segment_with_a_star_matches(name: str, data: st.DataObject) -> None:
    parts = name.split(".")
    index = data.draw(st.integers(0, len(parts) - 1))
    parts[index] = "*"
    assert ChannelPattern(".".join(parts)).matches(name)


@HEAVY
@given(names_and_patterns(), channel_names())
def test_single_stars_never_cross_a_dot(case: tuple[str, ChannelPattern], other: str) -> None:
    _, pattern = case
    assume("**" not in pattern.text)
    if other.count(".") != pattern.text.count("."):
        assert not pattern.matches(other)


@given(channel_names(), st.data())
def test_double_star_matches_one_or_more_of_any_characters(name: str, data: st.DataObject) -> None:
    cut = data.draw(st.integers(0, min(len(name) - 1, MAX_NAME - 2)))
    head = name[:cut]
    pattern = ChannelPattern(head + "**")
    assert pattern.matches(name)
    assert not pattern.matches(head)  # "**" needs at least one character


small_patterns = st.lists(
    st.text("ab*", min_size=1, max_size=4).filter(lambda s: "***" not in s), min_size=1, max_size=3
).map(".".join)
small_names = st.lists(st.text("ab", min_size=1, max_size=3), min_size=1, max_size=4).map(".".join)


@settings(max_examples=200)
@given(small_patterns, small_names)
def test_matching_agrees_with_a_backtracking_oracle(text: str, name: str) -> None:
    assert ChannelPattern(text).matches(name) == oracle_matches(text, name)


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("user.*", "user.1", True),
        ("user.*", "users.1", False),
        ("user.*", "user.", False),
        ("user.*", "user.1.x", False),
        ("user.*", "user", False),
        ("a.*", "a.b.c", False),
        ("a.**", "a.b.c", True),
        ("a.**", "a.", False),
        ("presence-chat.*", "presence-chat.lobby", True),
        ("presence-chat.*", "presence-chat.lobby.x", False),
        ("private-**", "private-a.b.c", True),
        ("private-**", "private-", False),
        ("**", "anything.at.all", True),
        ("*", "one", True),
        ("*", "one.two", False),
        ("chat-*", "chat-1", True),
        ("chat-*", "chat-", False),
        ("*.inbox", "user.inbox", True),
        ("*.inbox", "a.user.inbox", False),
    ],
)
def test_pattern_examples(pattern: str, name: str, expected: bool) -> None:
    assert ChannelPattern(pattern).matches(name) is expected


@pytest.mark.parametrize(
    "text",
    [
        "***",
        "a.***",
        "a b",
        "a/*",
        "a#",
        "caf\u00e9.*",
        "",
        "a..*",
        ".*",
        "*.",
        "*" * (MAX_NAME + 1),
    ],
)
def test_invalid_patterns_raise_naming_the_pattern(text: str) -> None:
    with pytest.raises(InvalidPattern) as info:
        ChannelPattern(text)
    assert repr(text) in str(info.value)
    assert info.value.pattern == text
    assert info.value.reason
    assert isinstance(info.value, ValueError)


def test_triple_star_reason_says_it_is_ambiguous() -> None:
    with pytest.raises(InvalidPattern, match="ambiguous"):
        ChannelPattern("a.***")


def test_a_bad_pattern_character_is_named() -> None:
    with pytest.raises(InvalidPattern, match="'#'"):
        ChannelPattern("chat.#")


@pytest.mark.parametrize("value", [None, 3, b"a.*"])
def test_non_str_patterns_raise(value: object) -> None:
    with pytest.raises(InvalidPattern, match=type(value).__name__):
        ChannelPattern(value)  # type: ignore[arg-type]


def test_wildcard_patterns_are_not_literal() -> None:
    assert not ChannelPattern("user.*").is_literal
    assert not ChannelPattern("a**").is_literal
    assert str(ChannelPattern("user.*")) == "user.*"
