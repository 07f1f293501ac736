"""Who may subscribe to what: identities, access rules and the decision between them.

Public channels are open to anyone. ``user.{id}`` belongs to user ``id`` alone. Other private and
presence channels need a token and then either a grant in the token itself (its ``channels``
claim, a list of patterns the application signed) or a configured rule. Rules come from
``REALTIME_CHANNEL_RULES`` as ``pattern=rule`` pairs separated by ``;`` or new lines (so a pattern
in a rule cannot contain ``;``; grant such channels in tokens instead):

* ``authenticated``: any user with a valid token;
* ``users:1|2|3``: only the listed user ids;
* ``deny``: nobody (useful to close a channel family that a broader rule would open).

The first rule whose pattern matches decides. A private or presence channel that no grant and no
rule allows is refused, never silently opened.
"""

from __future__ import annotations

import enum

import attrs

from .channel import Channel, ChannelKind, ChannelPattern
from .errors import InvalidAccessRule, InvalidPattern
from .message import JSON


@attrs.frozen
class Identity:
    """Who holds a connection: a user id from a verified token, or nobody."""

    user_id: str | None = None
    user_info: JSON = None
    grants: tuple[ChannelPattern, ...] = ()
    """Patterns the token itself allows, beyond the configured rules."""
    expires_at: float | None = None

    @property
    def is_anonymous(self) -> bool:
        return self.user_id is None


ANONYMOUS = Identity()


class Verdict(enum.IntEnum):
    """The outcome of an access decision, numbered as the protocol's error codes."""

    ALLOWED = 200
    NEEDS_TOKEN = 401
    FORBIDDEN = 403


@attrs.frozen
class Decision:
    verdict: Verdict
    reason: str = ""

    @property
    def allowed(self) -> bool:
        return self.verdict is Verdict.ALLOWED


class RuleKind(enum.StrEnum):
    AUTHENTICATED = "authenticated"
    USERS = "users"
    DENY = "deny"


@attrs.frozen
class AccessRule:
    pattern: ChannelPattern
    kind: RuleKind
    users: frozenset[str] = frozenset()

    def allows(self, identity: Identity) -> bool:
        if self.kind is RuleKind.AUTHENTICATED:
            return not identity.is_anonymous
        if self.kind is RuleKind.USERS:
            return identity.user_id in self.users
        return False

    def __str__(self) -> str:
        if self.kind is RuleKind.USERS:
            return f"{self.pattern}=users:{'|'.join(sorted(self.users))}"
        return f"{self.pattern}={self.kind}"


def parse_rule(text: str) -> AccessRule:
    """One ``pattern=rule`` pair; raises ``InvalidAccessRule`` naming the bad part.

    The rule is what follows the last ``=``, so patterns may contain ``=`` (a channel character).
    """
    if ";" in text or "\n" in text:
        raise InvalidAccessRule(f"rule {text!r}: ';' and new lines separate rules")
    pattern_text, sep, rule_text = text.strip().rpartition("=")
    if not sep:
        raise InvalidAccessRule(f"rule {text!r} is not of the form pattern=rule")
    try:
        pattern = ChannelPattern(pattern_text.strip())
    except InvalidPattern as exc:
        raise InvalidAccessRule(f"rule {text!r}: {exc}") from exc
    rule_text = rule_text.strip()
    name, _, argument = rule_text.partition(":")
    try:
        kind = RuleKind(name)
    except ValueError:
        known = ", ".join(kind.value for kind in RuleKind)
        raise InvalidAccessRule(f"rule {text!r}: unknown rule {name!r}; known: {known}") from None
    users = frozenset(user for user in argument.split("|") if user)
    if kind is RuleKind.USERS and any("=" in user for user in users):
        raise InvalidAccessRule(f"rule {text!r}: user ids in rules cannot contain '='")
    if kind is RuleKind.USERS and not users:
        raise InvalidAccessRule(f"rule {text!r}: users: needs at least one user id, as users:1|2")
    if kind is not RuleKind.USERS and argument:
        raise InvalidAccessRule(f"rule {text!r}: {kind.value} takes no argument")
    return AccessRule(pattern, kind, users)


@attrs.frozen
class AccessPolicy:
    """The configured rules, in order; ``decide`` is the only way a subscription is allowed."""

    rules: tuple[AccessRule, ...] = ()

    @classmethod
    def parse(cls, text: str) -> AccessPolicy:
        parts = text.replace("\n", ";").split(";")
        return cls(tuple(parse_rule(part) for part in parts if part.strip()))

    def decide(self, identity: Identity, channel: Channel) -> Decision:
        kind = channel.kind
        if kind is ChannelKind.PUBLIC:
            return Decision(Verdict.ALLOWED)
        if identity.is_anonymous:
            return Decision(Verdict.NEEDS_TOKEN, f"{kind} channel {channel.name!r} needs a token")
        owner = channel.owner
        if owner is not None:
            if owner == identity.user_id:
                return Decision(Verdict.ALLOWED)
            return Decision(
                Verdict.FORBIDDEN,
                f"channel {channel.name!r} belongs to user {owner!r}, "
                f"not to user {identity.user_id!r}",
            )
        if any(grant.matches(channel) for grant in identity.grants):
            return Decision(Verdict.ALLOWED)
        for rule in self.rules:
            if rule.pattern.matches(channel):
                if rule.allows(identity):
                    return Decision(Verdict.ALLOWED)
                return Decision(
                    Verdict.FORBIDDEN,
                    f"rule {rule} refuses user {identity.user_id!r} on {channel.name!r}",
                )
        return Decision(
            Verdict.FORBIDDEN,
            f"no rule in REALTIME_CHANNEL_RULES and no token grant allows {kind} "
            f"channel {channel.name!r}",
        )

    def __str__(self) -> str:
        return ";".join(str(rule) for rule in self.rules)
