"""The memory broker's history: its retention rule, its laws, and what it really costs.

``tidings.domain.retention`` decides what stays: entries per channel, channels, and a byte budget
that the channel holding the most pays for. ``tidings.adapters.memory.history`` keeps each
message as its encoded envelope and counts what CPython takes for it, so the budget bounds
memory as the process measures it (tests/reliability/test_history_memory.py reads the RSS).
"""

from __future__ import annotations

import gc
import sys
import tracemalloc
from collections.abc import Iterator

import attrs
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from tidings import Channel, Message, Position
from tidings.adapters.memory.history import (
    ENTRY_OVERHEAD,
    LOG_OVERHEAD,
    MemoryHistory,
    log_cost,
)
from tidings.domain.errors import InvalidPosition, PositionExpired
from tidings.domain.retention import Retention

# -- The retention rule, on abstract entries -----------------------------------------------------


@attrs.frozen
class Entry:
    """An appended entry: which channel, its sequence number there, and its length."""

    channel: str
    number: int
    length: int

    def __len__(self) -> int:
        return self.length

    @property
    def cost(self) -> int:
        return self.length + ENTRY_COST


ENTRY_COST = 3
LOG_COST = 10


def _retention(per_channel: int, channels: int, budget: int) -> Retention[Entry]:
    return Retention(
        per_channel=per_channel,
        channels=channels,
        budget=budget,
        entry_overhead=ENTRY_COST,
        log_cost=lambda channel: LOG_COST,
        stream=lambda channel, generation: f"{channel}/{generation}",
    )


def _kept(retention: Retention[Entry]) -> dict[str, list[Entry]]:
    return {
        channel: list(log.entries)
        for channel in retention
        if (log := retention.log(channel)) is not None
    }


def _bytes(entries: list[Entry]) -> int:
    return sum(entry.cost for entry in entries)


appends = st.lists(
    st.tuples(st.sampled_from("abcdef"), st.integers(0, 60)), min_size=1, max_size=80
)


@settings(max_examples=300)
@given(
    per_channel=st.integers(0, 8),
    channels=st.integers(1, 6),
    budget=st.integers(0, 400),
    steps=appends,
)
def test_retention_laws_hold_after_every_append(
    per_channel: int, channels: int, budget: int, steps: list[tuple[str, int]]
) -> None:
    retention = _retention(per_channel, channels, budget)
    appended: dict[str, list[Entry]] = {}
    """Per channel, everything appended since its current log was made."""
    streams: dict[str, str] = {}
    for number, (channel, length) in enumerate(steps):
        before = _kept(retention)
        order = list(retention)
        entry = Entry(channel, number, length)
        stream, offset = retention.append(channel, entry)
        after = _kept(retention)

        # Offsets number everything appended to the log, kept or not; streams name the log.
        if streams.get(channel) != stream:
            assert channel not in before, "a log kept its stream"
            appended[channel], streams[channel] = [], stream
        assert offset == len(appended[channel])
        appended[channel].append(entry)

        # The three bounds, with exact accounting.
        assert retention.held == sum(LOG_COST + _bytes(kept) for kept in after.values())
        assert retention.held <= budget
        assert len(after) <= channels
        assert all(len(kept) <= per_channel for kept in after.values())

        # Each log keeps the suffix of what was appended to it, in order, offsets matching.
        for name, kept in after.items():
            log = retention.log(name)
            assert log is not None and log.stream == streams[name]
            assert kept == appended[name][len(appended[name]) - len(kept) :]
            assert log.next_offset == len(appended[name])
            assert log.first_offset == log.next_offset - len(kept)

        # Logs go least recently used first, whichever bound drops them.
        recency = [name for name in order if name != channel] + [channel]
        dropped = [name for name in recency if name not in after]
        assert dropped == recency[: len(dropped)]

        # What each channel held when the budget was enforced (the appended one had grown).
        pending = {name: kept for name, kept in before.items() if name in after}
        if channel in after and per_channel:
            pending[channel] = [*before.get(channel, []), entry][-per_channel:]
        shed = {name: [e for e in held if e not in after[name]] for name, held in pending.items()}
        losers = [name for name, lost in shed.items() if lost]
        for loser in losers:
            # Fairness: whoever gave up entries held the most; nobody else holds more now than
            # it did, so a channel under its fair share loses nothing while another is over it.
            for name, kept in after.items():
                assert _bytes(kept) <= _bytes(pending[loser]), (loser, name)
        bound_drops = int(channel not in order and len(order) == channels)
        if losers and len(dropped) == bound_drops:
            # Nothing is given up needlessly: taking back any one entry would break the budget.
            largest_shed = max(e.cost for lost in shed.values() for e in lost)
            assert retention.held + largest_shed > budget


@settings(max_examples=200)
@given(
    budget=st.integers(100, 2_000),
    quiet=st.lists(st.integers(0, 40), min_size=1, max_size=10),
    flood=st.lists(st.integers(0, 100), min_size=1, max_size=200),
)
def test_a_channel_within_its_fair_share_loses_nothing_however_another_floods(
    budget: int, quiet: list[int], flood: list[int]
) -> None:
    """The fair share of each of two channels is half of what the budget leaves for entries."""
    kept = [Entry("quiet", n, length) for n, length in enumerate(quiet)]
    assume(_bytes(kept) <= (budget - 2 * LOG_COST) / 2)
    retention = _retention(per_channel=1_000, channels=10, budget=budget)
    for entry in kept:
        retention.append("quiet", entry)
    for n, length in enumerate(flood):
        retention.append("flood", Entry("flood", n, length))
        log = retention.log("quiet")
        assert log is not None and list(log.entries) == kept
        assert retention.held <= budget


def test_the_largest_is_found_without_scanning_ten_thousand_channels() -> None:
    """10,000 channels at their budget, then a round over it: each append sheds from the log it
    made the largest, and the ranking heap stays within twice the logs (no leak)."""
    per_log = LOG_COST + 3 * (7 + ENTRY_COST)
    retention = _retention(per_channel=100, channels=20_000, budget=10_000 * per_log)
    for round_ in range(3):
        for n in range(10_000):
            retention.append(f"c{n}", Entry(f"c{n}", round_, 7))
    assert retention.held == retention.budget
    for n in range(5_000):
        retention.append(f"c{n}", Entry(f"c{n}", 3, 7))
    ranking = retention._ranking  # its bound is the point here
    assert len(ranking) <= 2 * len(retention) + 64
    retention.append("c0", Entry("c0", 99, 22))  # c0 holds the most until it holds just this
    numbers = {
        name: [entry.number for entry in log.entries]
        for name in ("c0", "c1", "c9999")
        if (log := retention.log(name)) is not None
    }
    assert numbers == {"c0": [99], "c1": [1, 2, 3], "c9999": [0, 1, 2]}
    assert retention.held <= retention.budget


@pytest.mark.parametrize(
    ("arguments", "named"),
    [
        ({"per_channel": -1}, "entries per channel"),
        ({"channels": 0}, "channels kept"),
        ({"budget": -5}, "byte budget"),
    ],
)
def test_bad_bounds_are_refused_naming_them(arguments: dict[str, int], named: str) -> None:
    bounds = {"per_channel": 1, "channels": 1, "budget": 1, **arguments}
    with pytest.raises(ValueError, match=named):
        _retention(**bounds)


# -- The memory broker's history: compact entries, replayed as they were -------------------------


def _history(size: int = 1_000, channels: int = 10_000, budget: int = 1 << 30) -> MemoryHistory:
    return MemoryHistory(size=size, channels=channels, budget=budget, epoch="test")


def _replay(history: MemoryHistory, channel: str, since: Position) -> list[tuple[Message, int]]:
    stream, first, missed = history.replayable(Channel(channel), since)
    return [
        (delivered.message, delivered.position.offset)
        for batch in MemoryHistory.decoded(stream, first, missed)
        for delivered in batch
        if delivered.position is not None
    ]


def test_a_replayed_message_is_the_message_that_was_published() -> None:
    history = _history()
    sent = [
        Message.event("private-room.1", "client-typed", {"text": "héllo", "n": [1, 2.5, None]}),
        Message(channel="private-room.1", event="e", data="x", exclude="conn-7", user_id="42"),
        Message(channel="private-room.1", event="e", data={"deep": {"a": True}}, timestamp=5),
    ]
    positions = [history.record(message) for message in sent]
    assert [offset for _, offset in _replay(history, "private-room.1", positions[0])] == [1, 2]
    before_first = Position(positions[0].stream, -1)
    replayed = [message for message, _ in _replay(history, "private-room.1", before_first)]
    assert replayed == sent
    assert replayed[1].exclude == "conn-7" and replayed[1].user_id == "42"


def test_replay_over_a_thousand_messages_comes_in_batches_in_order() -> None:
    history = _history(size=2_000)
    sent = [Message.event("public.many", "e", n) for n in range(1_201)]
    positions = [history.record(message) for message in sent]
    stream, first, missed = history.replayable(Channel("public.many"), positions[0])
    batches = list(MemoryHistory.decoded(stream, first, missed))
    assert [len(batch) for batch in batches] == [500, 500, 200]
    flat = [delivered for batch in batches for delivered in batch]
    assert [d.position for d in flat] == positions[1:]
    assert [d.message.data for d in flat] == list(range(1, 1_201))


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(0, 6),
    channels=st.integers(1, 4),
    budget=st.integers(0, 4_000),
    steps=st.lists(st.tuples(st.sampled_from("wxyz"), st.integers(0, 300)), max_size=40),
)
def test_resume_gets_exactly_the_kept_suffix_or_a_clear_refusal(
    size: int, channels: int, budget: int, steps: list[tuple[str, int]]
) -> None:
    """From every position ever handed out: either exactly what followed it, in order, with
    positions, or 410 (``PositionExpired``) when some of it is gone, or ``InvalidPosition`` when
    the channel's log was dropped since; never a gap, never a duplicate."""
    history = _history(size, channels, budget)
    published: list[tuple[str, Message, Position]] = []
    for channel, pad in steps:
        message = Message.event(f"public.{channel}", "e", "x" * pad)
        published.append((f"public.{channel}", message, history.record(message)))
    for channel, _, since in published:
        later = [
            (message, position)
            for name, message, position in published
            if name == channel and position.stream == since.stream
            and position.offset > since.offset
        ]  # fmt: skip
        try:
            replayed = _replay(history, channel, since)
        except PositionExpired:
            assert later, "nothing followed, so nothing can be missing"
            continue
        except InvalidPosition:
            assert history.stream_of(channel) != since.stream
            continue
        assert history.stream_of(channel) == since.stream
        assert replayed == [(message, position.offset) for message, position in later]


def test_a_channel_whose_messages_are_all_gone_refuses_old_positions_as_expired() -> None:
    """One big message is the most any channel holds, so it is what goes when small ones come;
    its channel's log stays, and resuming from before it is refused as too old (410)."""
    budget = log_cost("public.quiet") + log_cost("public.loud") + 2_000
    history = _history(size=1_000, channels=10, budget=budget)
    first = history.record(Message.event("public.quiet", "e", "x" * 1_500))
    for n in range(3):
        history.record(Message.event("public.loud", "e", n))
    with pytest.raises(PositionExpired, match=f"oldest retained position is {first}"):
        _replay(history, "public.quiet", Position(first.stream, -1))
    assert _replay(history, "public.quiet", first) == []
    loud = history.last("public.loud")
    assert len(_replay(history, "public.loud", Position(loud.stream, -1))) == 3
    assert history.stream_of("public.quiet") == first.stream


# -- What the history costs ----------------------------------------------------------------------


def _traced_bytes_held(history: MemoryHistory, messages: Iterator[Message]) -> int:
    """What Python allocated for the history while it recorded ``messages`` and they died."""
    gc.collect()
    tracemalloc.start()
    try:
        start = tracemalloc.get_traced_memory()[0]
        for message in messages:
            history.record(message)
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - start
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize(
    ("channels", "count", "sizes"),
    [
        (1, 5_000, (40, 400, 4_000)),  # entries' overhead matters
        (200, 20_000, (10, 1_000)),
        (5_000, 5_000, (10,)),  # logs' overhead matters
    ],
)
def test_the_history_counts_at_least_what_python_allocates_for_it(
    channels: int, count: int, sizes: tuple[int, ...]
) -> None:
    """The budget bounds real memory only if nothing held is left uncounted: object headers,
    the log's slots, each channel's structures. (The allocator's own rounding, which tracemalloc
    does not see, is in the overheads too; the reliability test measures the RSS.)"""
    history = _history(budget=1 << 40)
    names = [Channel(f"public.cost.{n}") for n in range(channels)]
    pads = ["x" * size for size in sizes]

    def messages() -> Iterator[Message]:
        for n in range(count):
            yield Message.event(names[n % channels], "e", pads[n % len(pads)])

    traced = _traced_bytes_held(history, messages())
    assert traced <= history.held, f"{traced} bytes allocated, {history.held} counted"
    assert history.held <= 1.6 * traced, "counted far more than is held"


def test_an_entry_costs_its_envelope_and_a_fixed_overhead() -> None:
    history = _history()
    message = Message.event("public.x", "e", "x" * 100)
    history.record(message)
    assert history.held == log_cost("public.x") + message.size + ENTRY_OVERHEAD
    assert sys.getsizeof(b"") < ENTRY_OVERHEAD  # the bytes object's header and more
    assert log_cost("public.x") > LOG_OVERHEAD


def test_history_off_still_positions_every_message_and_keeps_none() -> None:
    history = _history(size=0)
    positions = [history.record(Message.event("public.off", "e", n)) for n in range(3)]
    assert [position.offset for position in positions] == [0, 1, 2]
    assert history.held == log_cost("public.off")
    with pytest.raises(PositionExpired):
        _replay(history, "public.off", positions[0])
