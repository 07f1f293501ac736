"""Server-Sent Events without sockets: the request's parsing, the events' text, and the ids."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from tidings.application.gateway.sse import EventStreamFrames, heartbeat_period
from tidings.domain import Channel, Message, Position
from tidings.domain.protocol import encode_error, encode_event, encode_subscribed
from tidings.domain.sse import (
    HEARTBEAT,
    InvalidStreamRequest,
    encode_resume_id,
    parse_channels,
    parse_resume_id,
)
from tidings.domain.sse import encode_event as sse_event
from tidings.ports import HttpRequest, HttpResponse, SendOutcome

STREAM = "3f2a9c1d0e4b"


def test_resume_ids_round_trip_with_names_holding_equals_signs() -> None:
    positions = {"news": f"{STREAM}-17", "a=b.c": f"{STREAM}-0"}
    text = encode_resume_id(positions)
    assert text == f"news={STREAM}-17~a=b.c={STREAM}-0"
    assert parse_resume_id(text) == {name: Position.parse(p) for name, p in positions.items()}


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("junk", "not an event id of this gateway"),
        (f"={STREAM}-1", "not an event id of this gateway"),
        ("news=yesterday", "channel 'news'"),
        (f"news={STREAM}-1~", "not an event id"),
    ],
)
def test_a_resume_id_not_ours_is_refused_naming_why(text: str, words: str) -> None:
    with pytest.raises(InvalidStreamRequest, match=words):
        parse_resume_id(text)


def test_channels_are_checked_deduplicated_and_bounded() -> None:
    assert [c.name for c in parse_channels("a, b,a", 5)] == ["a", "b"]
    with pytest.raises(InvalidStreamRequest, match="give the channels"):
        parse_channels(" ", 5)
    with pytest.raises(InvalidStreamRequest, match="3 channels, over the limit of 2"):
        parse_channels("a,b,c", 2)
    with pytest.raises(InvalidStreamRequest, match="'a b'"):
        parse_channels("a b", 5)


def test_event_text_splits_lines_of_data() -> None:
    assert sse_event("{}", event="x", event_id="i") == "id: i\nevent: x\ndata: {}\n\n"
    assert sse_event("a\r\nb\rc\nd") == "data: a\ndata: b\ndata: c\ndata: d\n\n"


def test_heartbeats_come_under_the_idle_timeout() -> None:
    assert heartbeat_period(120) == 15
    assert heartbeat_period(2) == 1


class FakeStream:
    """Takes writes as told by ``outcome``; keeps what was written."""

    def __init__(self) -> None:
        self.outcome = SendOutcome.SENT
        self.written: list[str] = []
        self.finished: str | None = None

    def take_token(self) -> str | None:
        return None

    @property
    def remote(self) -> str:
        return "test"

    @property
    def request(self) -> HttpRequest:
        return HttpRequest("GET", "/sse")

    async def receive(self) -> str | bytes:
        raise AssertionError("not read here")

    def send_nowait(self, frames: Sequence[str]) -> SendOutcome:
        if self.outcome is not SendOutcome.BLOCKED:
            self.written += frames
        return self.outcome

    async def send_many(self, frames: Sequence[str]) -> None:
        self.written += frames

    async def refuse(self, response: HttpResponse) -> None: ...

    async def open(self) -> None: ...

    async def finish(self, text: str) -> None:
        self.finished = text

    async def close(self, code: int, reason: str = "") -> None: ...


def _event(channel: str, offset: int) -> str:
    return encode_event(Message.event(Channel(channel), "e", offset), Position(STREAM, offset))


def test_an_id_never_claims_what_a_blocked_write_did_not_send() -> None:
    stream = FakeStream()
    frames = EventStreamFrames(stream, {"a": f"{STREAM}-1"})
    assert frames.send_nowait([_event("a", 1)]) is SendOutcome.SENT
    assert f"id: a={STREAM}-2\n" in stream.written[-1]
    stream.outcome = SendOutcome.BLOCKED
    assert frames.send_nowait([_event("b", 5)]) is SendOutcome.BLOCKED
    stream.outcome = SendOutcome.SENT
    # b's message was not sent: the next id for a says nothing about b.
    frames.send_nowait([_event("a", 2)])
    assert f"id: a={STREAM}-3\n" in stream.written[-1]


def test_frames_become_named_or_unnamed_events() -> None:
    stream = FakeStream()
    frames = EventStreamFrames(stream)
    subscribed = encode_subscribed(Channel("a"), {"position": f"{STREAM}-0"})
    error = encode_error(410, "gone", "a")
    message = _event("a", 0)
    frames.send_nowait([subscribed, message, error, HEARTBEAT])
    assert stream.written == [
        f"id: a={STREAM}-0\nevent: subscribed\ndata: {subscribed}\n\n",
        f"id: a={STREAM}-1\ndata: {message}\n\n",
        f"event: error\ndata: {error}\n\n",
        HEARTBEAT,
    ]


async def test_the_end_says_why_and_what_to_do() -> None:
    stream = FakeStream()
    await EventStreamFrames(stream).close(4008, "slow consumer")
    assert stream.finished == (
        'event: disconnect\ndata: {"code":4008,"reason":"slow consumer","advice":"resume"}\n\n'
    )
