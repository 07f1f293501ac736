"""Resume positions: the opaque ``{stream}-{offset}`` text and stream identities."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tidings.domain import Position
from tidings.domain.errors import InvalidPosition
from tidings.domain.position import stream_id

parts = st.text(st.characters(codec="utf-8", exclude_characters="\x1f"), max_size=12) | st.integers(
    0, 2**31
)
part_tuples = st.lists(parts, min_size=1, max_size=4).map(tuple)
offsets = st.integers(-1, 2**63 - 1)  # Kafka offsets are int64; -1 is before the start
streams = part_tuples.map(lambda parts: stream_id(*parts))
positions = st.builds(Position, streams, offsets)

STREAM = stream_id("cluster", "realtime_user_1", 0)


@given(positions)
def test_parse_inverts_str(position: Position) -> None:
    text = str(position)
    assert Position.parse(text) == position
    assert text.startswith(position.stream + "-")
    assert re.fullmatch(r"[0-9a-f]{12}-(0|[1-9][0-9]*)", text)


@pytest.mark.parametrize("offset", [-1, 0, 1, 10**18, 2**63 - 1])
def test_offset_examples_round_trip(offset: int) -> None:
    position = Position(STREAM, offset)
    assert Position.parse(str(position)) == position


def test_the_position_before_a_stream_is_distinct_from_its_first_message() -> None:
    before, first = Position(STREAM, -1), Position(STREAM, 0)
    assert str(before) != str(first)
    assert Position.parse(str(before)) < Position.parse(str(first))


@pytest.mark.parametrize("offset", [-2, -10, -(10**18)])
def test_offsets_before_the_start_are_refused(offset: int) -> None:
    with pytest.raises(InvalidPosition, match=str(offset)):
        Position(STREAM, offset)


@given(st.integers(0, 10**19 - 1), st.integers(0, 10**19 - 1))
def test_every_issued_digit_string_parses_and_keeps_its_order(one: int, two: int) -> None:
    first, second = Position.parse(f"{STREAM}-{one}"), Position.parse(f"{STREAM}-{two}")
    assert str(first) == f"{STREAM}-{one}"
    assert first.stream == STREAM
    assert (first < second) == (one < two)


@given(st.text("0123456789abcdefg-x ", max_size=40))
def test_whatever_parses_is_in_canonical_form(text: str) -> None:
    try:
        position = Position.parse(text)
    except InvalidPosition as error:
        assert repr(text[:80]) in str(error)
    else:
        assert str(position) == text


@given(part_tuples)
def test_stream_id_is_deterministic_twelve_hex_digits(values: tuple[str | int, ...]) -> None:
    assert stream_id(*values) == stream_id(*values)
    assert re.fullmatch(r"[0-9a-f]{12}", stream_id(*values))


@given(part_tuples, part_tuples)
def test_stream_id_differs_for_different_parts(
    one: tuple[str | int, ...], two: tuple[str | int, ...]
) -> None:
    # Parts are named by their text: the int 0 and the str "0" name the same log.
    if tuple(map(str, one)) != tuple(map(str, two)):
        assert stream_id(*one) != stream_id(*two)
    else:
        assert stream_id(*one) == stream_id(*two)


def test_stream_id_examples_differ() -> None:
    ids = {
        stream_id("c1", "t", 0),
        stream_id("c1", "t", 1),
        stream_id("c2", "t", 0),
        stream_id("c1", "u", 0),
        stream_id("c1", "t0"),
        stream_id("memory", "epoch-1"),
    }
    assert len(ids) == 6


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage",
        "-1",
        "0",
        f"{STREAM}",
        f"{STREAM}-",
        f"{STREAM}--1",
        f"{STREAM}-01",
        f"{STREAM}-00",
        f"{STREAM}-1.5",
        f"{STREAM}-1e3",
        f"{STREAM}- 1",
        f"{STREAM}-1 ",
        f"{STREAM}-1\n",
        f"{STREAM}-\u0661",  # ARABIC-INDIC DIGIT ONE
        f"{STREAM}-{10**19}",
        f"{STREAM.upper()}-1",
        f"{STREAM[:-1]}-1",
        f"{STREAM}0-1",
        "zzzzzzzzzzzz-1",
        f"{STREAM}_1",
        f"{STREAM}-1-2",
    ],
)
def test_malformed_positions_are_refused_naming_the_text(text: str) -> None:
    with pytest.raises(InvalidPosition) as info:
        Position.parse(text)
    assert repr(text[:80]) in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("value", [None, 5, b"abcdef012345-1", ["x"], 1.5])
def test_non_str_positions_are_refused(value: object) -> None:
    with pytest.raises(InvalidPosition, match=type(value).__name__):
        Position.parse(value)


def test_long_garbage_is_cut_in_the_error() -> None:
    with pytest.raises(InvalidPosition) as info:
        Position.parse("x" * 10_000)
    assert len(str(info.value)) < 200


@given(streams, offsets, offsets)
def test_positions_of_one_stream_are_ordered_by_offset(stream: str, a: int, b: int) -> None:
    assert (Position(stream, a) < Position(stream, b)) == (a < b)
    assert (Position(stream, a) == Position(stream, b)) == (a == b)
