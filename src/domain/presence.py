"""Who is present on a presence channel, as a value that merges across gateway nodes.

A ``Presence`` maps each user to the connections they hold on the channel, each connection named
by the node it lives on and its id there, and carrying the user info from its token. Several
connections of one user are one member. Each node publishes the part it owns; any node's view is
the merge of those parts. Merging is a union of connections, so it is idempotent, commutative and
associative: nodes can apply snapshots in any order, any number of times, and agree.

Join and leave events are never stored; they are the ``diff`` between two views, so a user who
opens a second tab causes no join and a user whose last tab closes causes exactly one leave.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping

import attrs

from .message import JSON


@attrs.frozen(order=True)
class ConnectionRef:
    """One client connection, cluster-wide: the node that holds it and its id on that node."""

    node: str
    connection: str


@attrs.frozen
class Member:
    """A user present on a channel, with the info their token carried."""

    user_id: str
    user_info: JSON = None

    def to_dict(self) -> dict[str, JSON]:
        return {"user_id": self.user_id, "user_info": self.user_info}


def _canonical(info: JSON) -> str:
    return json.dumps(info, sort_keys=True, separators=(",", ":"), default=str)


def _pick_info(a: JSON, b: JSON) -> JSON:
    """A deterministic choice between two infos for the same connection (order-independent)."""
    return a if _canonical(a) >= _canonical(b) else b


@attrs.frozen
class PresenceChange:
    """What changed between two views: the members who joined and those who left."""

    joined: tuple[Member, ...] = ()
    left: tuple[Member, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.joined or self.left)


@attrs.frozen(eq=False)
class Presence:
    """Members of one presence channel; immutable, every change returns a new value."""

    _users: Mapping[str, Mapping[ConnectionRef, JSON]] = attrs.field(factory=dict)

    @classmethod
    def of(cls, entries: Iterable[tuple[str, ConnectionRef, JSON]]) -> Presence:
        presence = cls()
        for user_id, ref, info in entries:
            presence = presence.merge(cls({user_id: {ref: info}}))
        return presence

    def join(self, user_id: str, ref: ConnectionRef, user_info: JSON = None) -> Presence:
        connections = dict(self._users.get(user_id, {}))
        connections[ref] = user_info
        return Presence({**self._users, user_id: connections})

    def leave(self, ref: ConnectionRef) -> Presence:
        """Without the connection ``ref``; a user with no connection left is no longer a member."""
        return self._filtered(lambda candidate: candidate != ref)

    def without_node(self, node: str) -> Presence:
        """Without every connection held by ``node`` (used when a node dies or restarts)."""
        return self._filtered(lambda candidate: candidate.node != node)

    def only_node(self, node: str) -> Presence:
        """The part of this view that ``node`` owns."""
        return self._filtered(lambda candidate: candidate.node == node)

    def _filtered(self, keep: Callable[[ConnectionRef], bool]) -> Presence:
        users: dict[str, dict[ConnectionRef, JSON]] = {}
        for user_id, connections in self._users.items():
            kept = {ref: info for ref, info in connections.items() if keep(ref)}
            if kept:
                users[user_id] = kept
        return Presence(users)

    def merge(self, other: Presence) -> Presence:
        """The union of two views; idempotent, commutative and associative."""
        users = {user_id: dict(conns) for user_id, conns in self._users.items()}
        for user_id, connections in other._users.items():
            mine = users.setdefault(user_id, {})
            for ref, info in connections.items():
                mine[ref] = _pick_info(mine[ref], info) if ref in mine else info
        return Presence(users)

    @property
    def members(self) -> dict[str, Member]:
        """Each present user once, with the info of their earliest-named connection."""
        return {
            user_id: Member(user_id, connections[min(connections)])
            for user_id, connections in self._users.items()
        }

    def connections_of(self, user_id: str) -> frozenset[ConnectionRef]:
        return frozenset(self._users.get(user_id, {}))

    def entries(self) -> list[tuple[str, ConnectionRef, JSON]]:
        """Every (user, connection, info), sorted: the wire form of a snapshot."""
        return sorted(
            (
                (user_id, ref, info)
                for user_id, connections in self._users.items()
                for ref, info in connections.items()
            ),
            key=lambda entry: (entry[0], entry[1]),
        )

    def __contains__(self, user_id: object) -> bool:
        return user_id in self._users

    def __len__(self) -> int:
        return len(self._users)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Presence):
            return NotImplemented
        return self.entries() == other.entries()

    def __hash__(self) -> int:
        return hash(tuple((u, r, _canonical(i)) for u, r, i in self.entries()))

    def diff(self, after: Presence) -> PresenceChange:
        """Members who joined and left going from this view to ``after``."""
        before_members = self.members
        after_members = after.members
        joined = tuple(
            member for user_id, member in sorted(after_members.items())
            if user_id not in before_members
        )
        left = tuple(
            member for user_id, member in sorted(before_members.items())
            if user_id not in after_members
        )
        return PresenceChange(joined, left)
