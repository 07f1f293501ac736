"""The message envelope: construction, validation, codec and size limit."""

from __future__ import annotations

import contextlib
import json
import math
import re
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.domain.strategies import HEAVY, channels, event_names, json_objects, json_values
from tidings.domain import Channel, Message, MessageType
from tidings.domain.errors import InvalidChannel, InvalidMessage, MessageTooLarge

ENVELOPE_KEYS = {"id", "type", "channel", "event", "data", "timestamp"}

printable = st.characters(codec="utf-8").filter(str.isprintable)
ids = st.text(printable, min_size=1, max_size=128)
timestamps = st.floats(allow_nan=False, allow_infinity=False) | st.integers(0, 2**40)
excludes = st.none() | st.text(printable, min_size=1, max_size=20)


@st.composite
def messages(draw: st.DrawFn) -> Message:
    return Message(
        channel=draw(channels),
        event=draw(event_names),
        data=draw(json_values),
        id=draw(ids),
        timestamp=draw(timestamps),
        exclude=draw(excludes),
    )


factory_messages = st.builds(Message.event, channels, event_names, json_values)


# --- the factory and the field ----------------------------------------------------------------


def test_event_is_the_factory_on_the_class_and_the_name_on_an_instance() -> None:
    before = time.time()
    message = Message.event("user.1", "notification", {"text": "hi"})
    after = time.time()
    assert callable(Message.event)
    assert message.event == "notification"
    assert isinstance(message.event, str)
    assert message.channel == Channel("user.1")
    assert message.data == {"text": "hi"}
    assert message.type is MessageType.EVENT
    assert message.exclude is None
    assert before <= message.timestamp <= after
    assert message.id


def test_the_factory_accepts_a_channel_and_an_exclude() -> None:
    message = Message.event(Channel("chat"), "said", "x", exclude="conn-1")
    assert message.channel == Channel("chat")
    assert message.exclude == "conn-1"
    assert message.to_dict()["exclude"] == "conn-1"


def test_the_factory_gives_every_message_a_fresh_id() -> None:
    ids = {Message.event("chat", "said").id for _ in range(50)}
    assert len(ids) == 50


def test_the_factory_defaults_data_to_none() -> None:
    assert Message.event("chat", "said").data is None


def test_the_factory_validates_the_channel() -> None:
    with pytest.raises(InvalidChannel):
        Message.event("not a channel", "said")


def test_messages_are_immutable() -> None:
    message = Message.event("chat", "said")
    with pytest.raises(AttributeError):
        message.event = "other"  # type: ignore[misc]
    with pytest.raises(AttributeError):
        message.data = 1  # type: ignore[misc]


# --- the codec --------------------------------------------------------------------------------


@HEAVY
@given(factory_messages)
def test_factory_messages_round_trip_through_json(message: Message) -> None:
    assert Message.from_json(message.to_json()) == message
    assert Message.from_json(message.to_bytes()) == message


@HEAVY
@given(messages())
def test_messages_round_trip_through_json(message: Message) -> None:
    decoded = Message.from_json(message.to_json())
    assert decoded == message
    assert decoded.event == message.event
    assert decoded.data == message.data
    assert Message.from_dict(message.to_dict()) == message


@HEAVY
@given(messages())
def test_to_dict_has_exactly_the_envelope_keys(message: Message) -> None:
    envelope = message.to_dict()
    expected = ENVELOPE_KEYS | ({"exclude"} if message.exclude is not None else set())
    assert set(envelope) == expected
    assert envelope["id"] == message.id
    assert envelope["type"] == "event"
    assert envelope["channel"] == message.channel.name
    assert envelope["event"] == message.event
    assert envelope["data"] == message.data
    assert envelope["timestamp"] == message.timestamp


@HEAVY
@given(messages())
def test_the_json_is_the_dict(message: Message) -> None:
    assert json.loads(message.to_json()) == message.to_dict()


@HEAVY
@given(messages(), st.text(max_size=20))
def test_extra_fields_are_appended_to_the_object(message: Message, value: str) -> None:
    extra = f',"position":{json.dumps(value)}'
    assert json.loads(message.to_json(extra=extra)) == {**message.to_dict(), "position": value}


def test_extra_position_example() -> None:
    message = Message.event("chat", "said", [1, 2])
    decoded = json.loads(message.to_json(extra=',"position":"x"'))
    assert decoded == {**message.to_dict(), "position": "x"}


@HEAVY
@given(messages())
def test_size_is_the_length_of_the_utf8_encoding(message: Message) -> None:
    assert message.size == len(message.to_json().encode("utf-8"))
    assert message.to_bytes() == message.to_json().encode("utf-8")


def test_size_counts_bytes_not_characters() -> None:
    ascii_message = Message(Channel("c"), "e", "aa", id="i", timestamp=0)
    wide_message = Message(Channel("c"), "e", "\u00e9\u00e9", id="i", timestamp=0)
    assert wide_message.size == ascii_message.size + 2


@HEAVY
@given(messages(), json_objects)
def test_decoding_ignores_unknown_fields(message: Message, extra: dict[str, object]) -> None:
    known = ENVELOPE_KEYS | {"exclude"}
    envelope = {key: value for key, value in extra.items() if key not in known}
    envelope.update(message.to_dict())
    assert Message.from_json(json.dumps(envelope)) == message


def test_decoding_fills_defaults_for_optional_fields() -> None:
    message = Message.from_json('{"id":"1","channel":"chat","event":"said"}')
    assert message.type is MessageType.EVENT
    assert message.data is None
    assert message.timestamp == 0
    assert message.exclude is None


# --- validation -------------------------------------------------------------------------------


def test_an_empty_event_name_is_refused_naming_the_channel() -> None:
    with pytest.raises(InvalidMessage, match=re.escape("'user.1'")):
        Message.event("user.1", "")


def test_event_names_up_to_200_characters_are_accepted() -> None:
    assert Message.event("chat", "e" * 200).event == "e" * 200


@given(st.integers(201, 1000))
def test_event_names_over_200_characters_are_refused(length: int) -> None:
    with pytest.raises(InvalidMessage, match=str(length)):
        Message.event("chat", "e" * length)


@pytest.mark.parametrize("event", ["new\nline", "tab\t", "nul\x00", "bell\x07", "del\x7f"])
def test_control_characters_in_event_names_are_refused(event: str) -> None:
    with pytest.raises(InvalidMessage) as info:
        Message.event("chat", event)
    assert repr(event) in str(info.value)


@pytest.mark.parametrize("event", [None, 3, b"said"])
def test_non_str_event_names_are_refused(event: object) -> None:
    with pytest.raises(InvalidMessage, match=type(event).__name__):
        Message.event("chat", event)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data",
    [
        {1, 2},
        object(),
        float("nan"),
        float("inf"),
        -float("inf"),
        {"nested": [float("nan")]},
        b"bytes",
    ],
    ids=["set", "object", "nan", "inf", "-inf", "nested-nan", "bytes"],
)
def test_data_that_is_not_json_is_refused_naming_the_channel(data: object) -> None:
    with pytest.raises(InvalidMessage) as info:
        Message.event("orders.7", "created", data)
    assert "'orders.7'" in str(info.value)


@pytest.mark.parametrize("value", ["", "x" * 129, 5, None])
def test_bad_ids_are_refused(value: object) -> None:
    with pytest.raises(InvalidMessage, match="id"):
        Message(Channel("c"), "e", id=value)  # type: ignore[arg-type]


@pytest.mark.parametrize("value", [float("nan"), float("inf"), True, "1", None])
def test_bad_timestamps_are_refused_naming_the_value(value: object) -> None:
    with pytest.raises(InvalidMessage) as info:
        Message(Channel("c"), "e", timestamp=value)  # type: ignore[arg-type]
    assert repr(value) in str(info.value)


def test_data_with_a_lone_surrogate_is_refused_or_encodable() -> None:
    # "\ud800" is what json.loads gives for the JSON text "\\ud800", which a client may send.
    # A Message either refuses it on construction or can be encoded; it must not exist and then
    # fail in to_bytes/size/check_size with a UnicodeEncodeError.
    try:
        message = Message.from_json('{"id":"1","channel":"chat","event":"said","data":"\\ud800"}')
    except InvalidMessage:
        return
    encoded = message.to_bytes()
    assert Message.from_json(encoded) == message
    assert message.check_size(10_000) is message


def test_deeply_nested_envelopes_are_invalid_messages() -> None:
    depth = 100_000
    text = '{"id":"1","channel":"chat","event":"said","data":' + "[" * depth + "]" * depth + "}"
    with pytest.raises(InvalidMessage):
        Message.from_json(text)


# --- size limit -------------------------------------------------------------------------------


@HEAVY
@given(messages(), st.integers(-5, 5))
def test_check_size_raises_iff_over_the_limit(message: Message, delta: int) -> None:
    limit = message.size + delta
    if message.size > limit:
        with pytest.raises(MessageTooLarge) as info:
            message.check_size(limit)
        error = info.value
        assert error.size == message.size
        assert error.limit == limit
        assert error.channel == message.channel.name
        assert isinstance(error, InvalidMessage)
        assert str(message.size) in str(error)
        assert repr(message.channel.name) in str(error)
    else:
        assert message.check_size(limit) is message


# --- decoding errors --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("not json", "not valid JSON"),
        (b"\xff\xfe\xfa", "not valid JSON"),
        ("", "not valid JSON"),
        ("[1, 2]", "list"),
        ('"chat"', "str"),
        ("null", "NoneType"),
        ('{"channel":"chat","event":"said"}', "id"),
        ('{"id":"1","event":"said"}', "channel"),
        ('{"id":"1","channel":"chat"}', "event"),
        ("{}", "id, channel, event"),
        ('{"id":"1","channel":"bad name","event":"said"}', "'bad name'"),
        ('{"id":"1","channel":"a..b","event":"said"}', "'a..b'"),
        ('{"id":"1","channel":7,"event":"said"}', "7"),
        ('{"id":"1","channel":"chat","event":"said","type":"whisper"}', "'whisper'"),
        ('{"id":"1","channel":"chat","event":"said","type":["event"]}', "['event']"),
        ('{"id":"1","channel":"chat","event":"said","exclude":5}', "exclude"),
        ('{"id":"1","channel":"chat","event":""}', "empty"),
        ('{"id":"1","channel":"chat","event":7}', "int"),
        ('{"id":"","channel":"chat","event":"said"}', "id"),
        ('{"id":1,"channel":"chat","event":"said"}', "id"),
        ('{"id":"1","channel":"chat","event":"said","timestamp":"now"}', "'now'"),
        ('{"id":"1","channel":"chat","event":"said","timestamp":Infinity}', "Infinity"),
        ('{"id":"1","channel":"chat","event":"said","data":NaN}', "NaN"),
    ],
)
def test_bad_envelopes_raise_invalid_message_naming_the_problem(
    text: str | bytes, fragment: str
) -> None:
    with pytest.raises(InvalidMessage) as info:
        Message.from_json(text)
    assert fragment in str(info.value)


@given(st.text(max_size=50) | st.binary(max_size=50))
def test_decoding_garbage_raises_only_invalid_message(text: str | bytes) -> None:
    with contextlib.suppress(InvalidMessage):
        Message.from_json(text)


ENVELOPE_FIELDS = ["id", "channel", "event", "type", "timestamp", "exclude", "data"]


@HEAVY
@given(st.dictionaries(st.sampled_from(ENVELOPE_FIELDS), json_values | channels.map(str)))
def test_decoding_any_json_object_raises_only_invalid_message(
    overrides: dict[str, object],
) -> None:
    envelope: dict[str, object] = {"id": "1", "channel": "chat", "event": "said", **overrides}
    try:
        decoded = Message.from_json(json.dumps(envelope))
    except InvalidMessage:
        return
    assert math.isfinite(decoded.timestamp)
    assert decoded == Message.from_json(decoded.to_json())


@pytest.mark.parametrize("bad", ["", "a\x00b", "\ud800", "x" * 129])
def test_ids_and_excludes_must_be_printable_text(bad: str) -> None:
    with pytest.raises(InvalidMessage, match="printable text"):
        Message(Channel("chat"), "said", None, id=bad)
    with pytest.raises(InvalidMessage, match="printable text"):
        Message.event("chat", "said", None, exclude=bad)


# --- the trusted decoding path (a gateway builds every message it delivers from the broker) ---

envelope_values = (
    st.none()
    | st.booleans()
    | st.integers(-2, 2**40)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
)
"""What JSON text decodes to (a trusted envelope's data is JSON already: no NaN, no infinity)."""


@st.composite
def tampered_envelopes(draw: st.DrawFn) -> dict[str, object]:
    """A message's envelope with some fields removed or replaced by anything JSON-ish."""
    message = draw(messages())
    envelope: dict[str, object] = message.to_dict()
    envelope["user_id"] = draw(excludes)
    for key in draw(st.sets(st.sampled_from(sorted(ENVELOPE_KEYS | {"exclude", "user_id"})))):
        if draw(st.booleans()):
            envelope.pop(key, None)
        else:
            envelope[key] = draw(envelope_values | st.sampled_from(["", "event", "user.1"]))
    return envelope


def _decoded(envelope: dict[str, object], *, trusted: bool) -> Message | str:
    try:
        return Message.from_dict(envelope, trusted=trusted)
    except InvalidMessage as exc:
        return f"InvalidMessage: {exc}"


@HEAVY
@given(tampered_envelopes())
def test_a_trusted_envelope_is_checked_as_the_constructor_checks(
    envelope: dict[str, object],
) -> None:
    trusted = _decoded(envelope, trusted=True)
    checked = _decoded(envelope, trusted=False)
    if isinstance(checked, str) or isinstance(trusted, str):
        assert trusted == checked  # the same refusal, with the same words
        return
    assert trusted == checked
    assert (trusted.exclude, trusted.user_id) == (checked.exclude, checked.user_id)
    assert trusted.to_json() == checked.to_json()
    assert trusted.to_json(for_client=True) == checked.to_json(for_client=True)


@HEAVY
@given(messages())
def test_a_trusted_envelope_uses_the_data_json_it_is_given(message: Message) -> None:
    envelope = json.loads(message.to_json())
    data_json = json.dumps(envelope.get("data"), ensure_ascii=False, separators=(",", ":"))
    decoded = Message.from_dict(envelope, trusted=True, data_json=data_json)
    assert decoded == message
    assert decoded.to_json() == message.to_json()
    assert decoded.to_bytes() == message.to_bytes()
