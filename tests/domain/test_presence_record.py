"""Presence records, the wire form of the cluster: every kind survives JSON, keys do not collide."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.domain.presence import PresenceRecord

names = st.text(st.characters(min_codepoint=32, max_codepoint=0x2FFF), min_size=1, max_size=12)
times = st.floats(0, 2e9, allow_nan=False)
infos = st.none() | st.dictionaries(st.text(max_size=5), st.integers(), max_size=2)
entries = st.lists(st.tuples(names, names, infos), max_size=3).map(tuple)

records = st.one_of(
    st.builds(PresenceRecord, names, names, times),
    st.builds(PresenceRecord, names, names, times, leaving=st.just(True)),
    st.builds(PresenceRecord, names, names, times, names, entries),
    st.builds(PresenceRecord.subscriptions, names, names, times, names, st.integers(0, 10**6)),
    st.builds(PresenceRecord.termination, names, names, times, names),
)


@given(records)
def test_every_record_survives_json(record: PresenceRecord) -> None:
    assert PresenceRecord.from_json(record.to_json()) == record


@given(records, records)
def test_records_of_different_kinds_never_share_a_key(a: PresenceRecord, b: PresenceRecord) -> None:
    def kind(record: PresenceRecord) -> str:
        if record.terminate is not None:
            return "terminate"
        if record.channel is None:
            return "heartbeat"
        return "count" if record.count is not None else "presence"

    if kind(a) != kind(b):
        assert a.key() != b.key()


def test_version_1_records_stay_version_1() -> None:
    """Nodes of an older version read presence parts and heartbeats as before."""
    record = PresenceRecord("n", "e", 1.0, "presence-room", (("u", "c", None),))
    assert json.loads(record.to_json())["v"] == 1
    assert json.loads(PresenceRecord.subscriptions("n", "e", 1.0, "room", 2).to_json())["v"] == 2


@pytest.mark.parametrize(
    "payload",
    [
        {"count": -1, "channel": "a"},
        {"count": True, "channel": "a"},
        {"count": 1},
        {"terminate": 7},
        {"terminate": "u", "channel": "a"},
    ],
)
def test_bad_counts_and_terminations_are_refused(payload: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PresenceRecord.from_json(
            json.dumps({"v": 2, "node": "n", "epoch": "e", "at": 1, **payload})
        )
