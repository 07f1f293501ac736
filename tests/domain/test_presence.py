"""Presence: a mergeable view of who is on a channel, and the joins and leaves between views."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from tests.domain.strategies import (
    HEAVY,
    connection_refs,
    node_ids,
    presence_entries,
    user_ids,
    user_infos,
)
from tidings.domain import ConnectionRef, Member, Presence, PresenceChange

Entry = tuple[str, ConnectionRef, object]

presences = presence_entries.map(Presence.of)

ANN_TAB_1 = ConnectionRef("node-a", "c1")
ANN_TAB_2 = ConnectionRef("node-b", "c2")
BOB_TAB = ConnectionRef("node-a", "c3")


def member_ids(presence: Presence) -> set[str]:
    return set(presence.members)


# --- merge laws -------------------------------------------------------------------------------


@HEAVY
@given(presences)
def test_merge_is_idempotent(p: Presence) -> None:
    assert p.merge(p) == p
    assert p.merge(p).entries() == p.entries()


@HEAVY
@given(presences, presences)
def test_merge_is_commutative(p: Presence, q: Presence) -> None:
    assert p.merge(q) == q.merge(p)
    assert p.merge(q).members == q.merge(p).members


@HEAVY
@given(presences, presences, presences)
def test_merge_is_associative(p: Presence, q: Presence, r: Presence) -> None:
    assert p.merge(q).merge(r) == p.merge(q.merge(r))


@HEAVY
@given(presences)
def test_the_empty_presence_is_the_unit_of_merge(p: Presence) -> None:
    assert p.merge(Presence()) == p
    assert Presence().merge(p) == p


@HEAVY
@given(presences, presences)
def test_merge_is_the_union_of_connections(p: Presence, q: Presence) -> None:
    merged = p.merge(q)
    assert member_ids(merged) == member_ids(p) | member_ids(q)
    for user_id in member_ids(merged):
        assert merged.connections_of(user_id) == p.connections_of(user_id) | q.connections_of(
            user_id
        )


@HEAVY
@given(presence_entries.flatmap(lambda es: st.tuples(st.just(es), st.permutations(es))))
def test_conflicting_infos_are_resolved_independently_of_order(
    case: tuple[list[Entry], list[Entry]],
) -> None:
    entries, shuffled = case
    assert Presence.of(entries) == Presence.of(shuffled)
    assert Presence.of(entries).members == Presence.of(shuffled).members


@HEAVY
@given(user_ids, connection_refs, user_infos, user_infos)
def test_a_conflict_on_one_connection_keeps_one_of_the_two_infos(
    user_id: str, ref: ConnectionRef, first: object, second: object
) -> None:
    one = Presence.of([(user_id, ref, first), (user_id, ref, second)])
    two = Presence.of([(user_id, ref, second), (user_id, ref, first)])
    assert one == two
    [(_, _, info)] = one.entries()
    assert info in (first, second)


def test_presences_equal_by_value_hash_equal() -> None:
    # 1 == 1.0 and 1 == True, so these views compare equal; equal objects must hash equal.
    ref = ConnectionRef("n", "c")
    for left, right in [(1, 1.0), (1, True), ({"a": 0}, {"a": 0.0})]:
        p, q = Presence.of([("u", ref, left)]), Presence.of([("u", ref, right)])
        assert p == q
        assert hash(p) == hash(q), (left, right)


# --- join and leave ---------------------------------------------------------------------------


def test_two_connections_of_one_user_are_one_member() -> None:
    empty = Presence()
    one_tab = empty.join("ann", ANN_TAB_1, {"name": "Ann"})
    two_tabs = one_tab.join("ann", ANN_TAB_2, {"name": "Ann"})
    assert len(two_tabs) == 1
    assert list(two_tabs.members) == ["ann"]
    assert two_tabs.connections_of("ann") == {ANN_TAB_1, ANN_TAB_2}
    assert empty.diff(one_tab) == PresenceChange(joined=(Member("ann", {"name": "Ann"}),))
    assert not one_tab.diff(two_tabs)


def test_leaving_one_of_two_connections_changes_no_membership() -> None:
    two_tabs = Presence().join("ann", ANN_TAB_1).join("ann", ANN_TAB_2).join("bob", BOB_TAB)
    one_tab = two_tabs.leave(ANN_TAB_1)
    assert "ann" in one_tab
    assert member_ids(one_tab) == {"ann", "bob"}
    assert not two_tabs.diff(one_tab)
    none_left = one_tab.leave(ANN_TAB_2)
    assert "ann" not in none_left
    assert one_tab.diff(none_left) == PresenceChange(left=(Member("ann"),))


def test_leaving_an_unknown_connection_changes_nothing() -> None:
    p = Presence().join("ann", ANN_TAB_1)
    assert p.leave(BOB_TAB) == p


@HEAVY
@given(presences, user_ids, connection_refs, user_infos)
def test_join_adds_a_member_only_for_a_new_user(
    p: Presence, user_id: str, ref: ConnectionRef, info: object
) -> None:
    after = p.join(user_id, ref, info)
    assert ref in after.connections_of(user_id)
    assert member_ids(after) == member_ids(p) | {user_id}
    change = p.diff(after)
    assert change.left == ()
    if user_id in p:
        assert change.joined == ()
    else:
        assert [member.user_id for member in change.joined] == [user_id]


@HEAVY
@given(presences, connection_refs)
def test_leave_removes_a_member_only_with_their_last_connection(
    p: Presence, ref: ConnectionRef
) -> None:
    after = p.leave(ref)
    change = p.diff(after)
    assert change.joined == ()
    expected_left = {
        user_id for user_id in member_ids(p) if p.connections_of(user_id) == frozenset({ref})
    }
    assert {member.user_id for member in change.left} == expected_left
    for user_id in member_ids(after):
        assert after.connections_of(user_id) == p.connections_of(user_id) - {ref}


# --- diff -------------------------------------------------------------------------------------


@HEAVY
@given(presences, presences)
def test_diff_is_the_set_difference_of_members(before: Presence, after: Presence) -> None:
    change = before.diff(after)
    joined = [member.user_id for member in change.joined]
    left = [member.user_id for member in change.left]
    assert joined == sorted(member_ids(after) - member_ids(before))
    assert left == sorted(member_ids(before) - member_ids(after))
    assert all(member == after.members[member.user_id] for member in change.joined)
    assert all(member == before.members[member.user_id] for member in change.left)
    assert bool(change) == bool(joined or left)


@HEAVY
@given(presences, presences)
def test_diff_reversed_swaps_joined_and_left(before: Presence, after: Presence) -> None:
    forward, backward = before.diff(after), after.diff(before)
    assert forward.joined == backward.left
    assert forward.left == backward.joined


@HEAVY
@given(presences)
def test_a_view_has_no_diff_with_itself(p: Presence) -> None:
    assert not p.diff(p)
    assert p.diff(p) == PresenceChange()


# --- nodes ------------------------------------------------------------------------------------


@HEAVY
@given(presences, node_ids)
def test_without_node_removes_exactly_that_nodes_connections(p: Presence, node: str) -> None:
    rest = p.without_node(node)
    assert [e for e in p.entries() if e[1].node != node] == rest.entries()
    assert all(ref.node != node for _, ref, _ in rest.entries())


@HEAVY
@given(presences, node_ids)
def test_only_node_keeps_exactly_that_nodes_connections(p: Presence, node: str) -> None:
    part = p.only_node(node)
    assert [e for e in p.entries() if e[1].node == node] == part.entries()


@HEAVY
@given(presences, node_ids)
def test_a_view_is_its_node_part_merged_with_the_rest(p: Presence, node: str) -> None:
    assert p.only_node(node).merge(p.without_node(node)) == p
    assert p.without_node(node).merge(p.only_node(node)) == p


@HEAVY
@given(presences, node_ids)
def test_a_node_dying_makes_its_only_users_leave(p: Presence, node: str) -> None:
    change = p.diff(p.without_node(node))
    expected = {
        user_id
        for user_id in member_ids(p)
        if all(ref.node == node for ref in p.connections_of(user_id))
    }
    assert {member.user_id for member in change.left} == expected


# --- members and entries ----------------------------------------------------------------------


def test_members_carry_the_info_of_the_earliest_named_connection() -> None:
    late, early = ConnectionRef("n2", "c"), ConnectionRef("n1", "z")
    p = Presence.of([("ann", late, {"tab": "late"}), ("ann", early, {"tab": "early"})])
    assert p.members == {"ann": Member("ann", {"tab": "early"})}
    assert Member("ann", {"x": 1}).to_dict() == {"user_id": "ann", "user_info": {"x": 1}}


@HEAVY
@given(presence_entries)
def test_entries_are_sorted_and_rebuild_the_view(entries: list[Entry]) -> None:
    p = Presence.of(entries)
    listed = p.entries()
    keys = [(user, ref) for user, ref, _ in listed]
    assert keys == sorted(keys)
    assert Presence.of(listed) == p
    assert len(p) == len({user for user, _, _ in entries})
    assert {(user, ref) for user, ref, _ in listed} == {(user, ref) for user, ref, _ in entries}
