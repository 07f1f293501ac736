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
        # Infos stay out of the hash: equal infos may differ in spelling (1 and 1.0).
        return hash(tuple((user_id, ref) for user_id, ref, _ in self.entries()))

    def diff(self, after: Presence) -> PresenceChange:
        """Members who joined and left going from this view to ``after``."""
        before_members = self.members
        after_members = after.members
        joined = tuple(
            member
            for user_id, member in sorted(after_members.items())
            if user_id not in before_members
        )
        left = tuple(
            member
            for user_id, member in sorted(before_members.items())
            if user_id not in after_members
        )
        return PresenceChange(joined, left)


@attrs.frozen
class PresenceRecord:
    """What one gateway node tells the others about presence (the wire form of the cluster).

    A node announces, per channel, the part of the presence it owns (``entries``; an empty
    tuple when it holds nobody there any more), and sends heartbeats (``channel`` is None).
    ``epoch`` changes each time a node process starts, so the others can tell a restarted node
    from a live one and forget what its previous run held.

    Two more kinds ride the same records (version 2 of the wire form, which nodes of version 1
    skip): a channel's ``count``, how many subscriptions this node holds on any channel
    (ADR 0037: cluster-wide occupancy), and ``terminate``, a user whose connections every node
    closes (Pusher's ``terminate_connections``).
    """

    node: str
    epoch: str
    at: float
    """Wall-clock time the record was made, in Unix seconds."""
    channel: str | None = None
    entries: tuple[tuple[str, str, JSON], ...] = ()
    """(user id, connection id, user info) of the node's connections on the channel."""
    leaving: bool = False
    """A heartbeat saying the node is shutting down cleanly: forget it now."""
    count: int | None = None
    """With ``channel``: the node's subscriptions on it (0: none left); not a presence part."""
    terminate: str | None = None
    """A user whose connections every node closes (no ``channel``)."""

    def key(self) -> str:
        """The compaction key: the latest record per key is all a new node needs to read."""
        if self.terminate is not None:
            return f"t|{self.node}|{self.terminate}"
        if self.channel is None:
            return f"hb|{self.node}"
        if self.count is not None:
            return f"n|{self.node}|{self.channel}"
        return f"ch|{self.node}|{self.channel}"

    @classmethod
    def subscriptions(
        cls, node: str, epoch: str, at: float, channel: str, count: int
    ) -> PresenceRecord:
        """How many subscriptions ``node`` holds on ``channel``."""
        return cls(node, epoch, at, channel, count=count)

    @classmethod
    def termination(cls, node: str, epoch: str, at: float, user_id: str) -> PresenceRecord:
        """Close every connection of ``user_id``, on every node."""
        return cls(node, epoch, at, terminate=user_id)

    def part(self) -> Presence:
        return Presence.of(
            (user_id, ConnectionRef(self.node, connection), info)
            for user_id, connection, info in self.entries
        )

    @classmethod
    def snapshot(
        cls, node: str, epoch: str, at: float, channel: str, part: Presence
    ) -> PresenceRecord:
        entries = tuple(
            (user_id, ref.connection, info)
            for user_id, ref, info in part.entries()
            if ref.node == node
        )
        return cls(node, epoch, at, channel, entries)

    def to_json(self) -> str:
        version = 1 if self.count is None and self.terminate is None else 2
        payload: dict[str, JSON] = {
            "v": version,
            "node": self.node,
            "epoch": self.epoch,
            "at": self.at,
        }
        if self.channel is not None:
            payload["channel"] = self.channel
            if self.count is None:
                payload["entries"] = [list(entry) for entry in self.entries]
            else:
                payload["count"] = self.count
        if self.terminate is not None:
            payload["terminate"] = self.terminate
        if self.leaving:
            payload["leaving"] = True
        return json.dumps(payload, separators=(",", ":"), ensure_ascii=False)

    @classmethod
    def from_json(cls, text: str | bytes) -> PresenceRecord:
        """Decode a record; raises ``ValueError`` naming what is wrong."""
        try:
            payload = json.loads(text)
        except ValueError as exc:
            raise ValueError(f"presence record is not JSON: {exc}") from None
        if not isinstance(payload, dict) or payload.get("v") not in (1, 2):
            raise ValueError("presence record is not a version 1 or 2 object")
        node, epoch, at = payload.get("node"), payload.get("epoch"), payload.get("at")
        if not isinstance(node, str) or not isinstance(epoch, str):
            raise ValueError("presence record lacks node or epoch")
        if isinstance(at, bool) or not isinstance(at, int | float):
            raise ValueError("presence record lacks its time")
        channel = payload.get("channel")
        if channel is not None and not isinstance(channel, str):
            raise ValueError("presence record channel must be a string")
        raw_entries = payload.get("entries", [])
        if not isinstance(raw_entries, list) or not all(
            isinstance(entry, list)
            and len(entry) == 3
            and isinstance(entry[0], str)
            and isinstance(entry[1], str)
            for entry in raw_entries
        ):
            raise ValueError("presence record entries must be [user, connection, info] lists")
        entries = tuple((entry[0], entry[1], entry[2]) for entry in raw_entries)
        count = payload.get("count")
        if count is not None and (
            isinstance(count, bool) or not isinstance(count, int) or count < 0 or channel is None
        ):
            raise ValueError("presence record count must be a whole number, with a channel")
        terminate = payload.get("terminate")
        if terminate is not None and (not isinstance(terminate, str) or channel is not None):
            raise ValueError("presence record terminate must be a user id, without a channel")
        return cls(
            node,
            epoch,
            float(at),
            channel,
            entries,
            bool(payload.get("leaving", False)),
            count,
            terminate,
        )
