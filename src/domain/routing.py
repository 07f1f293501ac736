"""Which subscribers a message reaches: the subscription table.

The table is the single source of truth for routing on a gateway. A subscriber holds channels
(``user.42``) and, for server-side consumers, patterns (``user.*``). A message on a channel reaches
exactly the subscribers of that channel plus those of every pattern that matches it; nothing is ever
delivered by a fallback. Exact channels are a dict lookup; patterns are few and scanned.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

from .channel import Channel, ChannelPattern

S = TypeVar("S", bound=Hashable)

Target = Channel | ChannelPattern


class SubscriptionTable(Generic[S]):
    """Channel and pattern subscriptions of many subscribers."""

    __slots__ = ("_by_channel", "_by_pattern", "_by_subscriber")

    def __init__(self) -> None:
        self._by_channel: dict[str, set[S]] = {}
        self._by_pattern: dict[ChannelPattern, set[S]] = {}
        self._by_subscriber: dict[S, set[Target]] = {}

    def add(self, subscriber: S, target: Target) -> bool:
        """Subscribe; returns False when the subscriber already held ``target``."""
        held = self._by_subscriber.setdefault(subscriber, set())
        if target in held:
            return False
        held.add(target)
        if isinstance(target, Channel):
            self._by_channel.setdefault(target.name, set()).add(subscriber)
        else:
            self._by_pattern.setdefault(target, set()).add(subscriber)
        return True

    def remove(self, subscriber: S, target: Target) -> bool:
        """Unsubscribe; returns False when the subscriber did not hold ``target``."""
        held = self._by_subscriber.get(subscriber)
        if not held or target not in held:
            return False
        held.discard(target)
        if not held:
            del self._by_subscriber[subscriber]
        index: dict[str, set[S]] | dict[ChannelPattern, set[S]]
        key: str | ChannelPattern
        if isinstance(target, Channel):
            index, key = self._by_channel, target.name
        else:
            index, key = self._by_pattern, target
        members = index[key]  # type: ignore[index]
        members.discard(subscriber)
        if not members:
            del index[key]  # type: ignore[arg-type]
        return True

    def remove_subscriber(self, subscriber: S) -> list[Target]:
        """Drop every subscription of ``subscriber``; returns what it held."""
        held = list(self._by_subscriber.get(subscriber, ()))
        for target in held:
            self.remove(subscriber, target)
        return held

    def subscribers(self, channel: Channel | str) -> set[S]:
        """Exactly the subscribers a message on ``channel`` must reach."""
        name = channel.name if isinstance(channel, Channel) else channel
        found = set(self._by_channel.get(name, ()))
        for pattern, members in self._by_pattern.items():
            if pattern.matches(name):
                found.update(members)
        return found

    def targets_of(self, subscriber: S) -> frozenset[Target]:
        return frozenset(self._by_subscriber.get(subscriber, ()))

    def holds(self, subscriber: S, target: Target) -> bool:
        return target in self._by_subscriber.get(subscriber, ())

    def channels(self) -> Iterator[str]:
        """Channel names with at least one exact subscriber."""
        return iter(self._by_channel)

    def count(self, channel: Channel | str) -> int:
        """How many subscribers hold exactly ``channel`` (patterns aside)."""
        name = channel.name if isinstance(channel, Channel) else channel
        return len(self._by_channel.get(name, ()))

    def has_interest(self, channel: Channel | str) -> bool:
        name = channel.name if isinstance(channel, Channel) else channel
        if name in self._by_channel:
            return True
        return any(pattern.matches(name) for pattern in self._by_pattern)

    @property
    def subscriber_count(self) -> int:
        return len(self._by_subscriber)

    @property
    def subscription_count(self) -> int:
        return sum(len(targets) for targets in self._by_subscriber.values())
