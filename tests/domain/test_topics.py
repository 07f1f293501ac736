"""Topic strategies: the per-channel encoding and the shared topic set."""

from __future__ import annotations

import re

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests.domain.strategies import HEAVY, MAX_NAME, channels, punctuation_names
from tidings.domain import Channel, PerChannelTopics, SharedTopics, topic_strategy
from tidings.domain.channel import is_valid_name
from tidings.domain.errors import ConfigurationError, InvalidTopicName
from tidings.domain.topics import (
    MAX_TOPIC_LENGTH,
    TopicStrategy,
    decode_channel,
    encode_channel,
    presence_topic,
    topic_carries,
)

KAFKA_TOPIC = re.compile(r"[a-zA-Z0-9._-]{1,249}")

prefixes = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_-]{0,15}", fullmatch=True)
PER_CHANNEL = PerChannelTopics("realtime")


def topic_or_none(strategy: PerChannelTopics, channel: Channel) -> str | None:
    try:
        return strategy.topic_for(channel)
    except InvalidTopicName:
        return None


# --- per channel ------------------------------------------------------------------------------


def test_the_seed_example() -> None:
    assert PER_CHANNEL.topic_for(Channel("user.1")) == "realtime_user_1"
    assert PerChannelTopics().topic_for(Channel("user.1")) == "realtime_user_1"


@pytest.mark.parametrize(
    ("name", "topic"),
    [
        ("chat", "realtime_chat"),
        ("presence-chat.lobby", "realtime_presence--chat_lobby"),
        ("user_1", "realtime_user-_1"),
        ("user:1", "realtime_user-3a1"),
        ("a=b@c,d;e", "realtime_a-3db-40c-2cd-3be"),
    ],
)
def test_encoding_examples(name: str, topic: str) -> None:
    assert PER_CHANNEL.topic_for(Channel(name)) == topic


def test_colon_and_underscore_get_different_topics() -> None:
    assert PER_CHANNEL.topic_for(Channel("user:1")) != PER_CHANNEL.topic_for(Channel("user_1"))
    assert PER_CHANNEL.topic_for(Channel("user.1")) != PER_CHANNEL.topic_for(Channel("user_1"))


@HEAVY
@given(channels)
def test_per_channel_topics_are_kafka_legal_and_free_of_dots(channel: Channel) -> None:
    topic = topic_or_none(PER_CHANNEL, channel)
    assume(topic is not None)
    assert KAFKA_TOPIC.fullmatch(topic)
    assert "." not in topic
    assert topic not in (".", "..")


@HEAVY
@given(channels, channels)
def test_per_channel_topics_are_injective_even_up_to_kafkas_dot_underscore_rule(
    first: Channel, second: Channel
) -> None:
    one, two = topic_or_none(PER_CHANNEL, first), topic_or_none(PER_CHANNEL, second)
    assume(one is not None and two is not None)
    if first != second:
        assert one != two
        assert one.replace(".", "_") != two.replace(".", "_")
    else:
        assert one == two


@HEAVY
@given(prefixes, channels)
def test_channel_for_inverts_topic_for(prefix: str, channel: Channel) -> None:
    strategy = PerChannelTopics(prefix)
    topic = topic_or_none(strategy, channel)
    assume(topic is not None)
    assert strategy.channel_for(topic) == channel
    assert strategy.owns(topic)
    assert re.fullmatch(strategy.subscription_pattern(), topic)
    assert topic.startswith(prefix + "_")


@given(channels)
def test_encode_and_decode_are_inverse(channel: Channel) -> None:
    encoded = encode_channel(channel.name)
    assert decode_channel(encoded) == channel.name
    assert re.fullmatch(r"[A-Za-z0-9_-]+", encoded)


@HEAVY
@given(st.text("ab_-3af.", max_size=12))
def test_decode_accepts_only_canonical_text_through_channel_for(text: str) -> None:
    topic = "realtime_" + text
    if PER_CHANNEL.owns(topic):
        channel = PER_CHANNEL.channel_for(topic)
        assert PER_CHANNEL.topic_for(channel) == topic
    else:
        with pytest.raises(ValueError):
            PER_CHANNEL.channel_for(topic)


@pytest.mark.parametrize("text", ["-", "a-", "-z1", "-4", "-4g", "x-:0"])
def test_decode_refuses_bad_escapes(text: str) -> None:
    with pytest.raises(ValueError, match="escape"):
        decode_channel(text)


@pytest.mark.parametrize(
    "topic",
    [
        "realtime",
        "realtime_",
        "realtime-shared-0",
        "realtime-presence",
        "other_chat",
        "realtime_-41",  # decodes to "A", whose canonical spelling is "A"
        "realtime_a__b",  # decodes to "a..b", not a channel
        "realtime_-",
        "realtimex_chat",
    ],
)
def test_foreign_or_non_canonical_topics_are_not_owned(topic: str) -> None:
    assert not PER_CHANNEL.owns(topic)
    with pytest.raises(ValueError):
        PER_CHANNEL.channel_for(topic)


@given(punctuation_names)
def test_topic_for_refuses_exactly_the_channels_whose_topic_is_too_long(name: str) -> None:
    channel = Channel(name)
    expected_length = len("realtime_") + len(encode_channel(name))
    if expected_length > MAX_TOPIC_LENGTH:
        with pytest.raises(InvalidTopicName) as info:
            PER_CHANNEL.topic_for(channel)
        assert repr(name) in str(info.value)
        assert str(expected_length) in str(info.value)
    else:
        assert len(PER_CHANNEL.topic_for(channel)) == expected_length


def test_a_long_channel_of_equals_signs_is_refused() -> None:
    name = "=" * MAX_NAME
    assert is_valid_name(name)
    with pytest.raises(InvalidTopicName, match="shared"):
        PER_CHANNEL.topic_for(Channel(name))
    dotted = ".".join(["="] * 82)  # 163 characters of '=' segments
    with pytest.raises(InvalidTopicName):
        PER_CHANNEL.topic_for(Channel(dotted))


def test_plain_channels_of_maximal_length_fit() -> None:
    assert len(PER_CHANNEL.topic_for(Channel("a" * MAX_NAME))) == len("realtime_") + MAX_NAME


# --- shared -----------------------------------------------------------------------------------


@HEAVY
@given(prefixes, st.integers(1, 1000), channels)
def test_shared_topic_for_is_one_of_the_topics(prefix: str, count: int, channel: Channel) -> None:
    strategy = SharedTopics(prefix, count)
    topic = strategy.topic_for(channel)
    assert topic == SharedTopics(prefix, count).topic_for(Channel(channel.name))
    assert topic in strategy.fixed_topics()
    assert strategy.owns(topic)
    assert re.fullmatch(strategy.subscription_pattern(), topic)
    assert KAFKA_TOPIC.fullmatch(topic)


@HEAVY
@given(prefixes, st.integers(1, 50))
def test_shared_topics_are_count_distinct_legal_names(prefix: str, count: int) -> None:
    topics = SharedTopics(prefix, count).fixed_topics()
    assert len(topics) == count
    assert len(set(topics)) == count
    assert all(KAFKA_TOPIC.fullmatch(topic) for topic in topics)
    assert all(re.fullmatch(SharedTopics(prefix, count).subscription_pattern(), t) for t in topics)


@given(prefixes)
def test_per_channel_topics_are_not_a_fixed_set(prefix: str) -> None:
    assert PerChannelTopics(prefix).fixed_topics() is None


@HEAVY
@given(prefixes, st.integers(1, 20), st.text("realtimshd-_0123456789", max_size=20))
def test_shared_owns_only_its_topics(prefix: str, count: int, text: str) -> None:
    strategy = SharedTopics(prefix, count)
    assert strategy.owns(text) == (text in strategy.fixed_topics())
    assert not strategy.owns(f"{prefix}-shared-{count}")
    assert not strategy.owns(presence_topic(prefix))


@HEAVY
@given(prefixes, st.integers(1, 20), channels)
def test_per_channel_and_shared_names_never_coincide(
    prefix: str, count: int, channel: Channel
) -> None:
    per_channel, shared = PerChannelTopics(prefix), SharedTopics(prefix, count)
    topic = topic_or_none(per_channel, channel)
    assume(topic is not None)
    assert topic not in shared.fixed_topics()
    assert not shared.owns(topic)
    assert not re.fullmatch(shared.subscription_pattern(), topic)
    for shared_topic in shared.fixed_topics():
        assert not per_channel.owns(shared_topic)
        assert not re.fullmatch(per_channel.subscription_pattern(), shared_topic)
    assert topic != presence_topic(prefix)
    assert not per_channel.owns(presence_topic(prefix))


@HEAVY
@given(st.sampled_from(["per-channel", "shared"]), prefixes, st.integers(1, 10), channels)
def test_topic_for_is_deterministic(name: str, prefix: str, count: int, channel: Channel) -> None:
    one = topic_strategy(name, prefix, count)
    two = topic_strategy(name, prefix, count)
    try:
        first = one.topic_for(channel)
    except InvalidTopicName:
        return
    assert first == two.topic_for(Channel(channel.name))


# --- the topic is the authority (ADR 0016) ----------------------------------------------------

strategies = st.one_of(
    st.builds(PerChannelTopics, prefixes),
    st.builds(SharedTopics, prefixes, st.integers(1, 50)),
)
record_keys = st.one_of(st.none(), st.binary(max_size=20), channels.map(lambda c: c.name.encode()))


def published(strategy: TopicStrategy, channel: Channel) -> tuple[str, bytes] | None:
    """Where the publisher writes a message of ``channel``: its topic and record key."""
    try:
        return strategy.topic_for(channel), channel.name.encode()
    except InvalidTopicName:
        return None


@HEAVY
@given(strategies, channels)
def test_every_record_the_publisher_writes_is_accepted(
    strategy: TopicStrategy, channel: Channel
) -> None:
    record = published(strategy, channel)
    assume(record is not None)
    topic, key = record
    assert topic_carries(strategy, topic, key, channel.name)


@HEAVY
@given(strategies, channels, channels, record_keys)
def test_a_record_read_from_another_channels_topic_is_refused(
    strategy: TopicStrategy, named: Channel, owner: Channel, key: bytes | None
) -> None:
    """A record naming ``named`` in ``owner``'s topic is refused whenever their topics differ,
    whatever its key (the envelope does not outrank the topic)."""
    one, two = published(strategy, named), published(strategy, owner)
    assume(one is not None and two is not None)
    assert one is not None and two is not None
    if one[0] != two[0]:
        assert not topic_carries(strategy, two[0], key, named.name)
        assert not topic_carries(strategy, two[0], two[1], named.name)


@HEAVY
@given(prefixes, st.integers(1, 50), channels, record_keys)
def test_on_shared_topics_a_wrong_key_is_refused(
    prefix: str, count: int, channel: Channel, key: bytes | None
) -> None:
    strategy = SharedTopics(prefix, count)
    assume(key != channel.name.encode())
    assert not topic_carries(strategy, strategy.topic_for(channel), key, channel.name)


@HEAVY
@given(prefixes, channels, record_keys)
def test_per_channel_topics_accept_any_key(
    prefix: str, channel: Channel, key: bytes | None
) -> None:
    """A per-channel topic carries one channel, so the key says nothing more (a PHP publisher
    sharing the topic may key its records otherwise)."""
    strategy = PerChannelTopics(prefix)
    topic = topic_or_none(strategy, channel)
    assume(topic is not None)
    assert topic is not None
    assert topic_carries(strategy, topic, key, channel.name)


@HEAVY
@given(strategies, st.text(max_size=30), record_keys)
def test_a_record_naming_no_valid_channel_is_refused(
    strategy: TopicStrategy, name: str, key: bytes | None
) -> None:
    assume(not is_valid_name(name) or name in ("presence-", "private-"))
    topics = strategy.fixed_topics() or [f"{strategy.prefix}_{encode_channel(name)}"]
    assert not any(topic_carries(strategy, topic, key, name) for topic in topics)


def test_the_forged_record_of_the_issue_is_refused() -> None:
    """A record saying ``user.1``, written into ``realtime_public_news``."""
    assert not topic_carries(PER_CHANNEL, "realtime_public_news", b"public.news", "user.1")
    assert not topic_carries(PER_CHANNEL, "realtime_public_news", b"user.1", "user.1")
    assert topic_carries(PER_CHANNEL, "realtime_user_1", b"user.1", "user.1")


def test_only_the_shared_strategy_is_keyed() -> None:
    assert SharedTopics("realtime", 4).keyed
    assert not PerChannelTopics("realtime").keyed


# --- configuration ----------------------------------------------------------------------------


def test_topic_strategy_builds_the_named_strategy() -> None:
    assert topic_strategy("per-channel") == PerChannelTopics("realtime")
    assert topic_strategy("shared", "app", 4) == SharedTopics("app", 4)


def test_an_unknown_strategy_lists_the_known_ones() -> None:
    with pytest.raises(ConfigurationError) as info:
        topic_strategy("nope")
    message = str(info.value)
    assert "'nope'" in message
    assert "per-channel" in message
    assert "shared" in message


@pytest.mark.parametrize("prefix", ["", "a.b", ".", "-a", "_a", "a b", "caf\u00e9", "a" * 101])
def test_bad_prefixes_are_configuration_errors(prefix: str) -> None:
    with pytest.raises(ConfigurationError) as info:
        PerChannelTopics(prefix)
    assert repr(prefix) in str(info.value)
    with pytest.raises(ConfigurationError):
        SharedTopics(prefix, 1)


@pytest.mark.parametrize("count", [0, -1, 1001])
def test_bad_shared_counts_are_configuration_errors(count: int) -> None:
    with pytest.raises(ConfigurationError, match=str(count)):
        SharedTopics("realtime", count)
    with pytest.raises(ConfigurationError):
        topic_strategy("shared", "realtime", count)


@pytest.mark.parametrize("count", [1, 1000])
def test_shared_count_bounds_are_inclusive(count: int) -> None:
    assert len(SharedTopics("realtime", count).fixed_topics()) == count
