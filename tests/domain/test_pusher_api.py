"""What Pusher's HTTP API accepts as an event: what is valid comes through as given, what is
not is refused with Pusher's status and a message naming the field."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.domain.strategies import any_channel_names, event_names
from tidings.domain.pusher.api import (
    MAX_BATCH,
    MAX_CHANNELS,
    MAX_DATA_BYTES,
    parse_batch,
    parse_event,
    parse_info,
    parse_socket_id,
)
from tidings.domain.pusher.signing import RequestRefused

datas = st.text(max_size=300).filter(lambda text: len(text.encode()) <= MAX_DATA_BYTES)
socket_ids = st.tuples(st.integers(0, 10**12), st.integers(0, 10**12)).map(
    lambda pair: f"{pair[0]}.{pair[1]}"
)


def refusal(item: object, **options: int | bool) -> RequestRefused:
    with pytest.raises(RequestRefused) as caught:
        parse_event(item, **options)  # type: ignore[arg-type]
    return caught.value


@given(st.lists(any_channel_names, min_size=1, max_size=MAX_CHANNELS), event_names, datas)
def test_a_valid_event_comes_through_as_given(names: list[str], name: str, data: str) -> None:
    event = parse_event(json.loads(json.dumps({"channels": names, "name": name, "data": data})))
    assert [channel.name for channel in event.channels] == list(dict.fromkeys(names))
    assert (event.name, event.data, event.socket_id, event.info) == (name, data, None, frozenset())


@given(any_channel_names, socket_ids)
def test_one_channel_and_a_socket_id(name: str, socket_id: str) -> None:
    event = parse_event({"channel": name, "name": "e", "data": "", "socket_id": socket_id})
    assert [c.name for c in event.channels] == [name] and event.socket_id == socket_id


@given(
    st.text(max_size=30).filter(lambda text: not text.isascii() or "." not in text) | st.just("٣.٣")
)
def test_anything_but_two_numbers_is_no_socket_id(text: str) -> None:
    with pytest.raises(RequestRefused, match="socket_id"):
        parse_socket_id(text)


@given(st.integers(1, 4096))
def test_data_is_limited_in_utf8_bytes(limit: int) -> None:
    fits, over = "é" * (limit // 2), "é" * (limit // 2) + "xx"
    assert parse_event({"channel": "a", "name": "e", "data": fits}, max_data_bytes=limit)
    refused = refusal({"channel": "a", "name": "e", "data": over}, max_data_bytes=limit)
    assert refused.status == 413 and str(limit) in refused.message


@pytest.mark.parametrize(
    ("item", "words"),
    [
        ([], "JSON object"),
        ({"channel": "a", "data": "x"}, "name"),
        ({"channel": "a", "name": "", "data": "x"}, "name"),
        ({"channel": "a", "name": "e" * 201, "data": "x"}, "200"),
        ({"channel": "a", "name": "e\n", "data": "x"}, "control"),
        ({"channel": "a", "name": "e"}, "data"),
        ({"channel": "a", "name": "e", "data": 1}, "string"),
        ({"name": "e", "data": "x"}, "channel"),
        ({"channels": "a", "name": "e", "data": "x"}, "list"),
        ({"channels": [], "name": "e", "data": "x"}, "list"),
        ({"channels": ["a"] * (MAX_CHANNELS + 1), "name": "e", "data": "x"}, "Too many"),
        ({"channels": [1], "name": "e", "data": "x"}, "string"),
        ({"channel": "a b", "name": "e", "data": "x"}, "a b"),
        ({"channel": "a", "name": "e", "data": "x", "info": "nope"}, "nope"),
        ({"channel": "a", "name": "e", "data": "x", "info": "user_count"}, "presence"),
    ],
)
def test_what_is_no_event_is_refused_naming_the_field(item: object, words: str) -> None:
    refused = refusal(item)
    assert refused.status == 400 and words in refused.message


def test_info_names_known_attributes_only() -> None:
    assert parse_info("subscription_count, user_count") == {"subscription_count", "user_count"}
    assert parse_info(None) == parse_info("") == frozenset()


@given(st.integers(0, 20))
def test_a_batch_holds_one_to_ten_events_each_on_one_channel(size: int) -> None:
    payload = {"batch": [{"channel": f"c{n}", "name": "e", "data": "x"} for n in range(size)]}
    if 1 <= size <= MAX_BATCH:
        assert [event.channels[0].name for event in parse_batch(payload)] == [
            f"c{n}" for n in range(size)
        ]
    else:
        with pytest.raises(RequestRefused) as caught:
            parse_batch(payload)
        assert caught.value.status == 400


def test_a_batch_event_names_one_channel() -> None:
    with pytest.raises(RequestRefused, match="channel"):
        parse_batch({"batch": [{"channels": ["a"], "name": "e", "data": "x"}]})
    with pytest.raises(RequestRefused, match="batch"):
        parse_batch([])
