"""Envelopes read from Kafka are checked up to their channel and built into messages only when
someone wants them: the record decoding, ``Delivered.undecoded`` and the hub's handling of an
envelope that turns out not to be a message."""

from __future__ import annotations

import json
from collections.abc import Sequence

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from tests.domain.strategies import HEAVY, channels, event_names, json_values
from tidings.adapters.kafka.common import KafkaDelivered, UndecodableRecords, data_json
from tidings.application.gateway import Limits
from tidings.application.gateway.hub import Hub
from tidings.application.gateway.presence import PresenceTracker
from tidings.application.gateway.session import Session, Subscription
from tidings.domain import Channel, Identity, Message, Position
from tidings.domain.errors import InvalidMessage
from tidings.ports import Delivered, SendOutcome

MESSAGE = Message.event("chat.1", "said", {"text": "hi"})
VALID = MESSAGE.to_json().encode()


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"not json",
        b"\xff\xfe",
        b"[1, 2]",
        b'{"no": "channel"}',
        b'{"channel": 7, "event": "e", "id": "x"}',
        b'{"channel": "bad channel!", "event": "e", "id": "x"}',
    ],
)
def test_a_record_that_is_no_envelope_is_skipped_and_counted(value: bytes | None) -> None:
    records = UndecodableRecords()
    assert records.envelope(value, "t/0") is None
    assert records.decode(value, "t/0") is None
    assert records.count == 2


def test_an_envelope_is_checked_up_to_its_channel_and_built_on_first_use() -> None:
    found = UndecodableRecords().envelope(VALID, "t/0")
    assert found is not None
    delivered = Delivered.undecoded(*found, Position("s", 4))
    assert delivered.channel == "chat.1"
    assert "undecoded" in repr(delivered)
    assert delivered.message == MESSAGE
    assert delivered.message is delivered.message  # built once
    assert delivered == Delivered(MESSAGE, Position("s", 4))
    assert delivered != Delivered(MESSAGE, Position("s", 5))


def test_an_envelope_with_a_good_channel_but_no_message_fails_when_it_is_used() -> None:
    records = UndecodableRecords()
    found = records.envelope(b'{"channel": "chat.1", "id": "x", "event": ""}', "t/0")
    assert found is not None and records.count == 0
    with pytest.raises(InvalidMessage, match="event name"):
        _ = Delivered.undecoded(*found, None).message


class Wire:
    """A connection that takes every frame at once and keeps them."""

    remote = "test"

    def __init__(self) -> None:
        self.frames: list[str] = []

    def take_token(self) -> None:
        return None

    def send_nowait(self, frames: Sequence[str]) -> SendOutcome:
        self.frames.extend(frames)
        return SendOutcome.SENT

    async def send_many(self, frames: Sequence[str]) -> None:
        self.frames.extend(frames)

    async def receive(self) -> str:
        raise AssertionError("not read in this test")

    async def close(self, code: int, reason: str = "") -> None:
        pass


def test_the_hub_skips_an_envelope_that_is_no_message_and_delivers_the_rest() -> None:
    hub = Hub(PresenceTracker("node", lambda channel, part: None))
    wire = Wire()
    session = Session(wire, Identity(), Limits(), "node", lambda task: None)  # type: ignore[arg-type]
    hub.add(session)
    hub.subscribe(session, Subscription(Channel("chat.1")))
    bad = orjson.loads(b'{"channel": "chat.1", "id": "x", "event": ""}')
    batch = [
        Delivered.undecoded("chat.1", bad, Position("s", 0)),
        Delivered.undecoded("chat.1", orjson.loads(VALID), Position("s", 1)),
        Delivered.undecoded("chat.2", bad, Position("s", 2)),  # nobody holds it: never built
    ]
    assert hub.dispatch(batch) == 1
    assert hub.invalid == 1
    [frame] = wire.frames
    assert orjson.loads(frame)["id"] == MESSAGE.id


@HEAVY
@given(st.builds(Message.event, channels, event_names, json_values))
def test_a_record_s_message_is_the_one_published_encoded_alike(message: Message) -> None:
    """The feed builds a record's message with the data's JSON from orjson: the same message,
    and text that decodes to the same values, to clients and back to the broker, as the
    standard library's (a float may be written differently: 1e-05 as 0.00001)."""
    found = UndecodableRecords().envelope(message.to_bytes(), "t/0")
    assert found is not None
    delivered = KafkaDelivered.undecoded(*found, Position("s", 0))
    assert delivered.message == message
    for for_client in (False, True):
        text = delivered.message.to_json(for_client=for_client)
        assert json.loads(text) == json.loads(message.to_json(for_client=for_client))
    assert delivered.message.size == len(delivered.message.to_json().encode())
    text = data_json(found[1])
    if text is not None:  # None: past what orjson writes, the message encodes its data itself
        assert json.loads(text) == json.loads(message.to_json())["data"]
    decoded = UndecodableRecords().decode(message.to_bytes(), "t/0")
    assert decoded == message
    assert decoded is not None and json.loads(decoded.to_bytes()) == json.loads(message.to_bytes())


def test_data_orjson_cannot_encode_is_left_to_the_message() -> None:
    assert data_json({"data": 2**70}) is None
    assert data_json({}) == "null"


@pytest.mark.parametrize("number", [2**64, -(2**63) - 1, 10**30, 1796524650435432400])
def test_a_record_s_integers_reach_clients_exactly(number: int) -> None:
    """orjson reads an integer past 64 bits as a float: such a record is decoded by the standard
    library, and its clients get the number that was published (ADR 0040)."""
    message = Message.event("chat.1", "said", {"n": number, "list": [number, 1.5]})
    found = UndecodableRecords().envelope(message.to_bytes(), "t/0")
    assert found is not None
    delivered = KafkaDelivered.undecoded(*found, Position("s", 0))
    sent = json.loads(delivered.message.to_json(for_client=True))["data"]
    assert sent == {"n": number, "list": [number, 1.5]}
    assert type(sent["n"]) is int
    decoded = UndecodableRecords().decode(message.to_bytes(), "t/0")
    assert decoded is not None and decoded.to_bytes() == message.to_bytes()
