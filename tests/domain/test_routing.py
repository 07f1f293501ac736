"""The subscription table, checked against a brute-force model."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from tests.domain.strategies import HEAVY, channel_names, names_and_patterns
from tidings.domain import Channel, ChannelPattern, SubscriptionTable

Target = Channel | ChannelPattern

NAMES = ["a", "a.b", "a.c", "a.b.c", "b", "user.1", "user.2", "users.1", "user.1.inbox", "x-1"]
PATTERN_TEXTS = ["a", "a.*", "a.**", "*", "**", "user.*", "*.b", "x-*", "user.1", "a.*.c"]
SUBSCRIBERS = ["s0", "s1", "s2", "s3"]

names = st.sampled_from(NAMES) | channel_names()
targets: st.SearchStrategy[Target] = st.one_of(
    st.sampled_from(NAMES).map(Channel),
    st.sampled_from(PATTERN_TEXTS).map(ChannelPattern),
)
subscribers = st.sampled_from(SUBSCRIBERS)


def model_subscribers(model: dict[str, set[Target]], name: str) -> set[str]:
    """Brute force: who holds the channel itself or a pattern matching it."""
    return {
        subscriber
        for subscriber, held in model.items()
        for target in held
        if (isinstance(target, Channel) and target.name == name)
        or (isinstance(target, ChannelPattern) and target.matches(name))
    }


class SubscriptionTableMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.table: SubscriptionTable[str] = SubscriptionTable()
        self.model: dict[str, set[Target]] = {}

    @rule(subscriber=subscribers, subscription=targets)
    def add(self, subscriber: str, subscription: Target) -> None:
        held = self.model.setdefault(subscriber, set())
        expected = subscription not in held
        held.add(subscription)
        assert self.table.add(subscriber, subscription) is expected

    @rule(subscriber=subscribers, subscription=targets)
    def remove(self, subscriber: str, subscription: Target) -> None:
        held = self.model.get(subscriber, set())
        expected = subscription in held
        held.discard(subscription)
        if not held:
            self.model.pop(subscriber, None)
        assert self.table.remove(subscriber, subscription) is expected

    @precondition(lambda self: bool(self.model))
    @rule(data=st.data())
    def remove_held(self, data: st.DataObject) -> None:
        subscriber = data.draw(st.sampled_from(sorted(self.model)))
        held = data.draw(st.sampled_from(sorted(self.model[subscriber], key=repr)))
        self.remove(subscriber, held)

    @rule(subscriber=subscribers)
    def remove_subscriber(self, subscriber: str) -> None:
        expected = self.model.pop(subscriber, set())
        removed = self.table.remove_subscriber(subscriber)
        assert len(removed) == len(expected)
        assert set(removed) == expected

    @rule(name=names)
    def route(self, name: str) -> None:
        expected = model_subscribers(self.model, name)
        assert self.table.subscribers(name) == expected
        assert self.table.subscribers(Channel(name)) == expected
        assert self.table.has_interest(name) == bool(expected)
        assert self.table.has_interest(Channel(name)) == bool(expected)

    @invariant()
    def routes_every_known_name_like_the_model(self) -> None:
        for name in NAMES:
            expected = model_subscribers(self.model, name)
            assert self.table.subscribers(name) == expected
            assert self.table.has_interest(name) == bool(expected)

    @invariant()
    def counts_and_holdings_match_the_model(self) -> None:
        assert self.table.subscriber_count == len(self.model)
        assert self.table.subscription_count == sum(len(held) for held in self.model.values())
        exact = {t.name for held in self.model.values() for t in held if isinstance(t, Channel)}
        assert set(self.table.channels()) == exact
        for subscriber in SUBSCRIBERS:
            held = self.model.get(subscriber, set())
            assert self.table.targets_of(subscriber) == held
            for target in held:
                assert self.table.holds(subscriber, target)


SubscriptionTableMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=25, deadline=None
)
TestSubscriptionTable = SubscriptionTableMachine.TestCase


# --- focused examples and properties ----------------------------------------------------------


def test_a_message_reaches_exact_and_pattern_subscribers_only() -> None:
    table: SubscriptionTable[str] = SubscriptionTable()
    assert table.add("browser", Channel("user.1"))
    assert table.add("audit", ChannelPattern("user.*"))
    assert table.add("other", Channel("user.2"))
    assert table.add("deep", ChannelPattern("user.**"))
    assert table.subscribers("user.1") == {"browser", "audit", "deep"}
    assert table.subscribers("user.1.inbox") == {"deep"}
    assert table.subscribers("users.1") == set()
    assert not table.has_interest("users.1")


def test_add_and_remove_report_whether_anything_changed() -> None:
    table: SubscriptionTable[str] = SubscriptionTable()
    assert table.add("s", Channel("a")) is True
    assert table.add("s", Channel("a")) is False
    assert table.add("s", ChannelPattern("a")) is True  # a pattern is not its channel
    assert table.subscription_count == 2
    assert table.remove("s", Channel("a")) is True
    assert table.remove("s", Channel("a")) is False
    assert table.remove("t", Channel("a")) is False
    assert table.subscribers("a") == {"s"}
    assert table.remove_subscriber("s") == [ChannelPattern("a")]
    assert table.remove_subscriber("s") == []
    assert table.subscriber_count == 0
    assert table.subscribers("a") == set()


@HEAVY
@given(st.lists(st.tuples(subscribers, names_and_patterns()), max_size=8), channel_names())
def test_a_pattern_subscriber_gets_every_name_its_pattern_was_drawn_from(
    subscriptions: list[tuple[str, tuple[str, ChannelPattern]]], other: str
) -> None:
    table: SubscriptionTable[str] = SubscriptionTable()
    for subscriber, (_, pattern) in subscriptions:
        table.add(subscriber, pattern)
    for subscriber, (name, _) in subscriptions:
        assert subscriber in table.subscribers(name)
        assert table.has_interest(name)
    expected = {s for s, (_, pattern) in subscriptions if pattern.matches(other)}
    assert table.subscribers(other) == expected


def test_subscribers_returns_a_copy() -> None:
    table: SubscriptionTable[str] = SubscriptionTable()
    table.add("s", Channel("a"))
    table.subscribers("a").add("intruder")
    assert table.subscribers("a") == {"s"}
