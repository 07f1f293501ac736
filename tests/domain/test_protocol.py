"""The WebSocket protocol: decoding client frames and encoding server frames."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.domain.strategies import HEAVY, channels, event_names, json_objects, json_values
from tidings.domain import Channel, Message, Position
from tidings.domain.position import stream_id
from tidings.domain.protocol import (
    PONG,
    ClientEvent,
    ClientFrame,
    ErrorCode,
    Ping,
    ProtocolError,
    Subscribe,
    Unsubscribe,
    client_message,
    decode_client_frame,
    encode_error,
    encode_event,
    encode_subscribed,
    encode_unsubscribed,
    error_from,
)

STREAM = stream_id("cluster", "topic", 0)
positions = st.builds(Position, st.just(STREAM), st.integers(-1, 2**63 - 1))
client_event_names = event_names.map(lambda name: ("client-" + name)[:200])
FRAME_CLASSES = (Subscribe, Unsubscribe, ClientEvent, Ping)


def frame(**fields: object) -> str:
    return json.dumps(fields)


def decode_error(text: str | bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        decode_client_frame(text)
    return info.value


# --- valid frames -----------------------------------------------------------------------------


def test_ping() -> None:
    assert decode_client_frame('{"type":"ping"}') == Ping()
    assert decode_client_frame('{"type":"ping","extra":[1]}') == Ping()


@given(channels)
def test_subscribe_without_a_position(channel: Channel) -> None:
    assert decode_client_frame(frame(type="subscribe", channel=channel.name)) == Subscribe(channel)
    assert decode_client_frame(
        frame(type="subscribe", channel=channel.name, since=None)
    ) == Subscribe(channel)


@HEAVY
@given(channels, positions)
def test_subscribe_since_a_position(channel: Channel, position: Position) -> None:
    text = frame(type="subscribe", channel=channel.name, since=str(position))
    assert decode_client_frame(text) == Subscribe(channel, position)


@given(channels)
def test_unsubscribe(channel: Channel) -> None:
    assert decode_client_frame(frame(type="unsubscribe", channel=channel.name)) == Unsubscribe(
        channel
    )


@HEAVY
@given(channels, client_event_names, json_values)
def test_client_event(channel: Channel, event: str, data: object) -> None:
    text = frame(type="event", channel=channel.name, event=event, data=data)
    assert decode_client_frame(text) == ClientEvent(channel, event, data)


def test_client_event_without_data() -> None:
    decoded = decode_client_frame('{"type":"event","channel":"chat","event":"client-typing"}')
    assert decoded == ClientEvent(Channel("chat"), "client-typing", None)


# --- malformed frames -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "fragment", "channel"),
    [
        ("not json", "not valid JSON", None),
        ("", "not valid JSON", None),
        ("[1, 2]", "list", None),
        ('"ping"', "str", None),
        ("null", "NoneType", None),
        ("{}", "None", None),
        ('{"channel":"chat"}', "type", None),
        ('{"type":"publish"}', "'publish'", None),
        ('{"type":"Ping"}', "'Ping'", None),
        ('{"type":5}', "5", None),
        ('{"type":["ping"]}', "['ping']", None),
        ('{"type":null}', "None", None),
        ('{"type":"subscribe"}', "needs a channel", None),
        ('{"type":"unsubscribe"}', "needs a channel", None),
        ('{"type":"event","event":"client-x"}', "needs a channel", None),
        ('{"type":"subscribe","channel":"a b"}', "'a b'", "a b"),
        ('{"type":"subscribe","channel":""}', "empty", ""),
        ('{"type":"subscribe","channel":5}', "int", None),
        ('{"type":"subscribe","channel":["chat"]}', "list", None),
        ('{"type":"unsubscribe","channel":"a..b"}', "'a..b'", "a..b"),
        ('{"type":"subscribe","channel":"chat","since":"yesterday"}', "'yesterday'", "chat"),
        ('{"type":"subscribe","channel":"chat","since":5}', "int", "chat"),
        ('{"type":"subscribe","channel":"chat","since":""}', "''", "chat"),
        ('{"type":"event","channel":"chat","event":"typing"}', "'typing'", "chat"),
        ('{"type":"event","channel":"chat"}', "None", "chat"),
        ('{"type":"event","channel":"chat","event":7}', "7", "chat"),
        ('{"type":"event","channel":"chat","event":"client-a\\nb"}', "not printable", "chat"),
        (frame(type="event", channel="chat", event="client-" + "x" * 200), "too long", "chat"),
    ],
)
def test_malformed_frames_raise_400_naming_the_problem(
    text: str, fragment: str, channel: str | None
) -> None:
    error = decode_error(text)
    assert error.code is ErrorCode.BAD_FRAME
    assert int(error.code) == 400
    assert fragment in error.message
    assert error.channel == channel
    assert str(error).startswith("400 ")


def test_binary_frames_are_refused() -> None:
    error = decode_error(b'{"type":"ping"}')
    assert error.code == 400
    assert "binary" in error.message


def test_missing_type_is_named() -> None:
    error = decode_error('{"channel":"chat"}')
    assert "type" in error.message


def test_deeply_nested_frames_are_protocol_errors() -> None:
    # A few kilobytes from a client must be refused as a bad frame, not crash the decoder.
    depth = 100_000
    data = "[" * depth + "]" * depth
    text = '{"type":"event","channel":"a","event":"client-x","data":' + data + "}"
    error = decode_error(text)
    assert error.code == 400


# --- fuzzing ----------------------------------------------------------------------------------

frame_keys = st.sampled_from(["type", "channel", "since", "event", "data"]) | st.text(max_size=5)
frame_values = (
    st.sampled_from(["ping", "subscribe", "unsubscribe", "event", "client-x", "chat", "user.1"])
    | channels.map(str)
    | positions.map(str)
    | json_values
)
frame_objects = st.dictionaries(frame_keys, frame_values, max_size=5)


def decodes_or_refuses(text: str | bytes) -> ClientFrame | None:
    try:
        decoded = decode_client_frame(text)
    except ProtocolError as error:
        assert error.code is ErrorCode.BAD_FRAME
        assert error.message
        return None
    assert isinstance(decoded, FRAME_CLASSES)
    return decoded


@HEAVY
@given(frame_objects)
def test_any_json_object_decodes_or_is_refused(fields: dict[str, object]) -> None:
    decoded = decodes_or_refuses(json.dumps(fields))
    if decoded is not None:
        assert fields.get("type") in ("ping", "subscribe", "unsubscribe", "event")
    if isinstance(decoded, Subscribe | Unsubscribe | ClientEvent):
        assert decoded.channel.name == fields["channel"]


@HEAVY
@given(json_values)
def test_any_json_value_decodes_or_is_refused(value: object) -> None:
    decodes_or_refuses(json.dumps(value))


@given(st.text(max_size=60))
def test_any_text_decodes_or_is_refused(text: str) -> None:
    decodes_or_refuses(text)


@given(st.binary(max_size=30))
def test_any_bytes_are_refused(data: bytes) -> None:
    with pytest.raises(ProtocolError):
        decode_client_frame(data)


# --- server frames ----------------------------------------------------------------------------

messages = st.builds(Message.event, channels, event_names, json_values)


@HEAVY
@given(messages, positions)
def test_encode_event_is_the_envelope_plus_the_position(
    message: Message, position: Position
) -> None:
    decoded = json.loads(encode_event(message, position))
    assert decoded == {**message.to_dict(), "position": str(position)}
    assert Position.parse(decoded["position"]) == position


@HEAVY
@given(messages)
def test_encode_event_without_a_position_is_the_envelope(message: Message) -> None:
    assert json.loads(encode_event(message)) == message.to_dict()
    assert json.loads(encode_event(message, None)) == message.to_dict()


@HEAVY
@given(st.sampled_from(list(ErrorCode)), st.text(max_size=30), st.none() | channels.map(str))
def test_encode_error(code: ErrorCode, text: str, channel: str | None) -> None:
    decoded = json.loads(encode_error(code, text, channel))
    expected: dict[str, object] = {"type": "error", "data": {"code": int(code), "message": text}}
    if channel is not None:
        expected["channel"] = channel
    assert decoded == expected
    expected_keys = ["type", "data"] if channel is None else ["type", "channel", "data"]
    assert list(decoded) == expected_keys
    assert json.loads(error_from(ProtocolError(code, text, channel))) == expected


def test_encode_error_takes_plain_ints() -> None:
    assert json.loads(encode_error(429, "slow down")) == {
        "type": "error",
        "data": {"code": 429, "message": "slow down"},
    }


@HEAVY
@given(channels, st.none() | json_objects)
def test_subscribed_unsubscribed_and_pong(channel: Channel, data: object) -> None:
    subscribed = json.loads(encode_subscribed(channel, data))
    expected: dict[str, object] = {"type": "subscribed", "channel": channel.name}
    if data is not None:
        expected["data"] = data
    assert subscribed == expected
    assert json.loads(encode_unsubscribed(channel)) == {
        "type": "unsubscribed",
        "channel": channel.name,
    }
    assert json.loads(PONG) == {"type": "pong"}


# --- client events become messages ------------------------------------------------------------


@HEAVY
@given(
    channels,
    client_event_names,
    json_values,
    st.text(st.characters(codec="utf-8").filter(str.isprintable), min_size=1, max_size=10),
)
def test_a_client_event_becomes_a_message_excluding_its_sender(
    channel: Channel, event: str, data: object, connection: str
) -> None:
    message = client_message(ClientEvent(channel, event, data), connection)
    assert message.channel == channel
    assert message.event == event
    assert message.data == data
    assert message.exclude == connection
    assert json.loads(message.to_json())["exclude"] == connection


def test_a_client_event_with_non_json_data_is_a_bad_frame() -> None:
    decoded = decode_client_frame('{"type":"event","channel":"chat","event":"client-x","data":NaN}')
    assert isinstance(decoded, ClientEvent)
    with pytest.raises(ProtocolError) as info:
        client_message(decoded, "conn-1")
    assert info.value.code == 400
    assert info.value.channel == "chat"


def test_a_client_event_message_can_be_sent() -> None:
    # What a client sent and the gateway accepted must encode to bytes for the broker.
    decoded = decode_client_frame(
        '{"type":"event","channel":"chat","event":"client-x","data":"\\ud800"}'
    )
    assert isinstance(decoded, ClientEvent)
    try:
        message = client_message(decoded, "conn-1")
    except ProtocolError as error:
        assert error.code == 400
        return
    assert message.to_bytes()
