"""Access decisions: public channels, user channels, token grants and configured rules."""

from __future__ import annotations

import pytest
from hypothesis import Phase, assume, given, settings
from hypothesis import strategies as st

from tests.domain.strategies import (
    HEAVY,
    channel_names,
    channels,
    names_and_patterns,
    patterns,
    patterns_matching,
    segments,
)
from tidings.domain import (
    AccessPolicy,
    AccessRule,
    Channel,
    ChannelKind,
    ChannelPattern,
    Decision,
    Identity,
    Verdict,
)
from tidings.domain.access import ANONYMOUS, RuleKind, parse_rule
from tidings.domain.errors import InvalidAccessRule

user_ids = st.text("abcxyz0123456789-_", min_size=1, max_size=6)
few_user_ids = st.sampled_from(["1", "2", "a"]) | user_ids
identities = st.builds(Identity, user_ids, st.none() | st.just({"name": "n"}))
rules = st.builds(
    AccessRule,
    patterns(),
    st.sampled_from(list(RuleKind)),
    st.frozensets(user_ids, min_size=1, max_size=3),
).map(lambda r: r if r.kind is RuleKind.USERS else AccessRule(r.pattern, r.kind))
policies = st.lists(rules, max_size=3).map(lambda rs: AccessPolicy(tuple(rs)))
BROAD_RULES = [
    parse_rule(text)
    for text in (
        "**=authenticated",
        "**=deny",
        "*=users:abc",
        "private-**=users:a|b",
        "presence-**=deny",
        "user.**=authenticated",
        "user.*=users:a",
        "private.*=authenticated",
    )
]
broad_policies = st.lists(st.sampled_from(BROAD_RULES), max_size=4).map(
    lambda rs: AccessPolicy(tuple(rs))
)
"""Policies that open or close whole families: laws that hold whatever the rules say use these."""

# Rule text can only name patterns without '=' and ';', which the rule syntax itself uses.
rule_safe_patterns = patterns().filter(lambda p: "=" not in p.text and ";" not in p.text)
rule_safe_policies = st.lists(
    st.builds(
        AccessRule,
        rule_safe_patterns,
        st.sampled_from(list(RuleKind)),
        st.frozensets(user_ids, min_size=1, max_size=3),
    ).map(lambda r: r if r.kind is RuleKind.USERS else AccessRule(r.pattern, r.kind)),
    max_size=5,
).map(lambda rs: AccessPolicy(tuple(rs)))

public_channels = channels.filter(lambda c: c.kind is ChannelKind.PUBLIC)
guarded_channels = channels.filter(lambda c: c.kind is not ChannelKind.PUBLIC and c.owner is None)
guarded_names_and_patterns = names_and_patterns().filter(
    lambda case: Channel(case[0]).kind is not ChannelKind.PUBLIC and Channel(case[0]).owner is None
)


def reference_decision(policy: AccessPolicy, identity: Identity, channel: Channel) -> Verdict:
    """The documented order: grants, then the first matching rule, else refused."""
    if any(grant.matches(channel) for grant in identity.grants):
        return Verdict.ALLOWED
    for rule in policy.rules:
        if rule.pattern.matches(channel):
            if rule.kind is RuleKind.AUTHENTICATED:
                return Verdict.ALLOWED
            if rule.kind is RuleKind.USERS and identity.user_id in rule.users:
                return Verdict.ALLOWED
            return Verdict.FORBIDDEN
    return Verdict.FORBIDDEN


# --- public, anonymous and user channels ------------------------------------------------------


@HEAVY
@given(broad_policies, identities | st.just(ANONYMOUS), public_channels)
def test_public_channels_are_open_to_anyone(
    policy: AccessPolicy, identity: Identity, channel: Channel
) -> None:
    decision = policy.decide(identity, channel)
    assert decision == Decision(Verdict.ALLOWED)
    assert decision.allowed


@HEAVY
@given(broad_policies, channels, st.lists(patterns(), max_size=2))
def test_anonymous_needs_a_token_for_every_other_channel(
    policy: AccessPolicy, channel: Channel, grants: list[ChannelPattern]
) -> None:
    assume(channel.kind is not ChannelKind.PUBLIC)
    decision = policy.decide(Identity(grants=tuple(grants)), channel)
    assert decision.verdict is Verdict.NEEDS_TOKEN
    assert decision.verdict == 401
    assert not decision.allowed
    assert repr(channel.name) in decision.reason
    assert str(channel.kind) in decision.reason


@HEAVY
@given(
    broad_policies,
    few_user_ids,
    few_user_ids,
    st.lists(segments, max_size=2),
    st.lists(patterns(), max_size=2),
)
def test_a_user_channel_is_allowed_to_its_owner_alone(
    policy: AccessPolicy, owner: str, user: str, rest: list[str], grants: list[ChannelPattern]
) -> None:
    # The owner is everything after "user.": user.1.x belongs to "1.x", not to "1".
    owner = ".".join([owner, *rest])
    channel = Channel(f"user.{owner}")
    identity = Identity(user, grants=(ChannelPattern("**"), *grants))
    decision = policy.decide(identity, channel)
    if user == owner:
        assert decision.allowed
    else:
        assert decision.verdict is Verdict.FORBIDDEN
        assert repr(owner) in decision.reason
        assert repr(user) in decision.reason


def test_user_channel_examples() -> None:
    policy = AccessPolicy.parse("user.**=authenticated")
    assert policy.decide(Identity("1"), Channel("user.1")).allowed
    assert not policy.decide(Identity("1"), Channel("user.1.inbox")).allowed
    assert policy.decide(Identity("john.doe"), Channel("user.john.doe")).allowed
    assert not policy.decide(Identity("john"), Channel("user.john.doe")).allowed
    refused = policy.decide(Identity("2"), Channel("user.1"))
    assert refused.verdict is Verdict.FORBIDDEN
    assert "'1'" in refused.reason and "'2'" in refused.reason
    assert policy.decide(ANONYMOUS, Channel("user.1")).verdict is Verdict.NEEDS_TOKEN


# --- grants and rules -------------------------------------------------------------------------


@HEAVY
@given(broad_policies, user_ids, guarded_names_and_patterns)
def test_a_token_grant_allows_the_channels_it_matches(
    policy: AccessPolicy, user: str, case: tuple[str, ChannelPattern]
) -> None:
    name, grant = case
    assert policy.decide(Identity(user, grants=(grant,)), Channel(name)).allowed


@st.composite
def policies_for(draw: st.DrawFn, channel: Channel) -> AccessPolicy:
    """Rules whose patterns often match ``channel``, so that order matters."""
    drawn = []
    for _ in range(draw(st.integers(0, 5))):
        pattern = draw(patterns_matching(channel.name) | patterns())
        kind = draw(st.sampled_from(list(RuleKind)))
        users = draw(st.frozensets(user_ids, min_size=1, max_size=3))
        drawn.append(AccessRule(pattern, kind, users if kind is RuleKind.USERS else frozenset()))
    return AccessPolicy(tuple(drawn))


@HEAVY
@given(identities, guarded_channels, st.lists(patterns(), max_size=2), st.data())
def test_the_first_matching_rule_decides(
    identity: Identity,
    channel: Channel,
    grants: list[ChannelPattern],
    data: st.DataObject,
) -> None:
    policy = data.draw(policies_for(channel))
    identity = Identity(identity.user_id, grants=tuple(grants))
    decision = policy.decide(identity, channel)
    assert decision.verdict is reference_decision(policy, identity, channel)
    if not decision.allowed:
        assert decision.verdict is Verdict.FORBIDDEN
        assert repr(channel.name) in decision.reason


@HEAVY
@given(identities, guarded_channels)
def test_no_rule_means_forbidden(identity: Identity, channel: Channel) -> None:
    decision = AccessPolicy().decide(identity, channel)
    assert decision.verdict is Verdict.FORBIDDEN
    assert "REALTIME_CHANNEL_RULES" in decision.reason


def test_rule_order_examples() -> None:
    policy = AccessPolicy.parse(
        "private-admin.*=users:1|2; private-admin.secret=deny; private-**=authenticated;"
        "presence-**=deny"
    )
    alice, carol = Identity("1"), Identity("3")
    assert policy.decide(alice, Channel("private-admin.panel")).allowed
    refused = policy.decide(carol, Channel("private-admin.panel"))
    assert refused.verdict is Verdict.FORBIDDEN
    assert "'3'" in refused.reason and "private-admin.panel" in refused.reason
    # The users rule comes first, so it decides even though a deny follows for this channel.
    assert policy.decide(alice, Channel("private-admin.secret")).allowed
    assert policy.decide(carol, Channel("private-news")).allowed
    assert policy.decide(alice, Channel("presence-room")).verdict is Verdict.FORBIDDEN
    granted = Identity("3", grants=(ChannelPattern("presence-room"),))
    assert policy.decide(granted, Channel("presence-room")).allowed


def test_deny_first_closes_a_family_a_later_rule_opens() -> None:
    policy = AccessPolicy.parse("private-x.*=deny;private-**=authenticated")
    assert not policy.decide(Identity("1"), Channel("private-x.y")).allowed
    assert policy.decide(Identity("1"), Channel("private-z")).allowed


def test_rules_allow_by_kind() -> None:
    pattern = ChannelPattern("private-**")
    authenticated = AccessRule(pattern, RuleKind.AUTHENTICATED)
    listed = AccessRule(pattern, RuleKind.USERS, frozenset({"1"}))
    deny = AccessRule(pattern, RuleKind.DENY)
    assert authenticated.allows(Identity("9")) and not authenticated.allows(ANONYMOUS)
    assert listed.allows(Identity("1")) and not listed.allows(Identity("9"))
    assert not listed.allows(ANONYMOUS)
    assert not deny.allows(Identity("1")) and not deny.allows(ANONYMOUS)


def test_verdicts_are_numbered_as_protocol_codes() -> None:
    assert (Verdict.ALLOWED, Verdict.NEEDS_TOKEN, Verdict.FORBIDDEN) == (200, 401, 403)
    assert Decision(Verdict.ALLOWED).allowed
    assert not Decision(Verdict.FORBIDDEN, "no").allowed
    assert ANONYMOUS.is_anonymous and not Identity("1").is_anonymous


# --- parsing ----------------------------------------------------------------------------------


def test_parse_examples() -> None:
    policy = AccessPolicy.parse("  private-**  =  authenticated ; presence-team.*=users:1|2|3 ;")
    assert policy.rules == (
        AccessRule(ChannelPattern("private-**"), RuleKind.AUTHENTICATED),
        AccessRule(ChannelPattern("presence-team.*"), RuleKind.USERS, frozenset({"1", "2", "3"})),
    )
    assert AccessPolicy.parse("") == AccessPolicy()
    assert AccessPolicy.parse(" ; ;") == AccessPolicy()
    assert parse_rule("a.*=deny") == AccessRule(ChannelPattern("a.*"), RuleKind.DENY)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("x", "pattern=rule"),
        ("a.*=nope", "'nope'"),
        ("a.*=", "unknown rule"),
        ("a.*=users:", "at least one user"),
        ("a.*=users:|", "at least one user"),
        ("a.*=deny:3", "takes no argument"),
        ("a.*=authenticated:yes", "takes no argument"),
        ("a b=deny", "' '"),
        ("a.***=deny", "ambiguous"),
        ("=deny", "empty"),
        ("a..b=deny", "empty"),
    ],
)
def test_bad_rules_raise_naming_the_text(text: str, fragment: str) -> None:
    with pytest.raises(InvalidAccessRule) as info:
        AccessPolicy.parse(f"private-ok=deny;{text}")
    assert repr(text) in str(info.value)
    assert fragment in str(info.value)


@HEAVY
@given(rule_safe_policies)
def test_str_of_a_policy_parses_back_to_it(policy: AccessPolicy) -> None:
    assert AccessPolicy.parse(str(policy)) == policy


@settings(phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.shrink])
@given(policies)
def test_str_of_any_policy_without_separators_parses_back_to_it(policy: AccessPolicy) -> None:
    # Patterns may hold every segment character, '=' included; ';' separates rules.
    assume(all(";" not in rule.pattern.text for rule in policy.rules))
    text = str(policy)
    try:
        parsed = AccessPolicy.parse(text)
    except InvalidAccessRule as error:
        raise AssertionError(f"{text!r} does not parse: {error}") from None
    assert parsed == policy


@pytest.mark.parametrize("pattern", ["private-a=b", "presence-k=v.*", "private-=.**"])
def test_rules_can_name_channels_with_equals_signs(pattern: str) -> None:
    policy = AccessPolicy((AccessRule(ChannelPattern(pattern), RuleKind.AUTHENTICATED),))
    assert AccessPolicy.parse(str(policy)) == policy


def test_a_pattern_with_the_rule_separator_is_split_and_refused_clearly() -> None:
    with pytest.raises(InvalidAccessRule, match="not of the form pattern=rule"):
        AccessPolicy.parse("private-a;b=authenticated")


@HEAVY
@given(channel_names(), user_ids)
def test_a_literal_users_rule_allows_only_its_users(name: str, user: str) -> None:
    channel = Channel(name)
    assume(channel.kind is not ChannelKind.PUBLIC and channel.owner is None)
    rule = AccessRule(ChannelPattern(name), RuleKind.USERS, frozenset({"listed"}))
    policy = AccessPolicy((rule,))
    assert policy.decide(Identity("listed"), channel).allowed
    assert policy.decide(Identity(user), channel).allowed == (user == "listed")
