"""The resume rules of a subscription (``tidings.client.cursor``), without a gateway."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from tidings.client.cursor import SEEN_IDS, Cursor


def event(
    ident: str, position: str | None = None, name: str = "e", data: Any = None
) -> dict[str, Any]:
    frame: dict[str, Any] = {"type": "event", "id": ident, "event": name, "data": data}
    if position is not None:
        frame["position"] = position
    return frame


def test_a_fresh_subscription_adopts_the_confirmations_position() -> None:
    cursor = Cursor()
    assert cursor.subscribe_frame("news") == {"type": "subscribe", "channel": "news"}
    cursor.subscribed({"position": "aaaaaaaaaaaa-4"})
    assert cursor.position == "aaaaaaaaaaaa-4"
    # The next connection resumes from it, although no message arrived.
    assert cursor.subscribe_frame("news")["since"] == "aaaaaaaaaaaa-4"


def test_a_resume_keeps_its_position_and_advances_message_by_message() -> None:
    cursor = Cursor("aaaaaaaaaaaa-4")
    assert cursor.subscribe_frame("news")["since"] == "aaaaaaaaaaaa-4"
    cursor.subscribed({"position": "aaaaaaaaaaaa-9"})  # the channel's current end
    assert cursor.position == "aaaaaaaaaaaa-4"
    assert cursor.accept(event("m5", "aaaaaaaaaaaa-5"))
    assert cursor.position == "aaaaaaaaaaaa-5"


def test_a_gap_with_nothing_received_continues_from_the_confirmation() -> None:
    cursor = Cursor("aaaaaaaaaaaa-4")
    cursor.subscribe_frame("news")
    cursor.subscribed({"position": "bbbbbbbbbbbb-2"})
    cursor.gap()
    assert cursor.position == "bbbbbbbbbbbb-2"
    # ...but not once something arrived after the resume.
    cursor = Cursor("aaaaaaaaaaaa-4")
    cursor.subscribe_frame("news")
    cursor.subscribed({"position": "bbbbbbbbbbbb-2"})
    cursor.accept(event("x", "bbbbbbbbbbbb-3"))
    cursor.gap()
    assert cursor.position == "bbbbbbbbbbbb-3"


def test_presence_members_follow_the_list_joins_and_leaves() -> None:
    cursor = Cursor()
    cursor.subscribe_frame("presence-room")
    cursor.subscribed({"position": "p", "members": [{"user_id": "1", "user_info": {"n": 1}}]})
    assert cursor.members == {"1": {"n": 1}}
    cursor.accept(event("j", name="presence.join", data={"user_id": "2", "user_info": None}))
    assert cursor.members == {"1": {"n": 1}, "2": None}
    cursor.accept(event("l", name="presence.leave", data={"user_id": "1", "user_info": {"n": 1}}))
    assert cursor.members == {"2": None}
    assert cursor.position == "p"  # presence events have no position


@given(st.lists(st.integers(0, 40), max_size=200))
def test_each_id_is_accepted_once_while_it_is_recent(ids: list[int]) -> None:
    cursor = Cursor()
    accepted = [ident for ident in ids if cursor.accept(event(str(ident)))]
    assert sorted(accepted) == sorted(set(ids))  # 41 ids fit in the memory of SEEN_IDS
    assert SEEN_IDS > 41


def test_ids_are_forgotten_oldest_first_beyond_the_bound() -> None:
    cursor = Cursor()
    for number in range(SEEN_IDS + 1):
        assert cursor.accept(event(str(number)))
    assert cursor.accept(event("0"))  # the oldest was forgotten
    assert not cursor.accept(event(str(SEEN_IDS)))  # the newest was not
