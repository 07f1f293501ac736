"""A frame-level fuzzer: hand-built RFC 6455 frames against a real gateway (issue #12).

A Hypothesis ``RuleBasedStateMachine`` drives one raw TCP connection per case
(``tests/support/rawws.py``: no WebSocket library, every byte built here and every byte of the
answer checked) through the connection's states: before the upgrade, open, after the client's
Close, after the server's Close. Its rules send control frames (valid, oversized, fragmented,
with bad close codes and reasons) in every state; text and binary messages fragmented into
continuation frames with control frames between them; unexpected continuations; reserved bits
and opcodes; unmasked frames; invalid UTF-8; lengths that lie; truncated frames followed by the
end of the socket; keep-alive requests and upgrades pipelined in one write; and valid protocol
frames (``ping``, ``subscribe``) among them, whose answers are awaited.

Invariants, after every step and case:

- the gateway process is alive;
- the server sends only well-formed server frames (unmasked, no reserved bit, a known opcode,
  minimal lengths, whole short control frames, UTF-8 text, a valid close code) and nothing at
  all after its Close; its close codes are the documented ones (docs/protocol.md), never 1011;
- a frame RFC 6455 says must fail the connection (a reserved bit or opcode, no mask, a long or
  fragmented control frame, a stray continuation, invalid UTF-8, a bad close code) sent on an
  open connection gets no answer to anything after it, and the server's Close, if it sends one,
  says 1002 or 1007 (docs/protocol.md); a message over 4x the frame limit closes with 1009;
- a regular upgrade is answered 101, one pipelined behind requests is served or refused (never
  left unanswered), requests are answered in order; pings and ``{"type":"ping"}`` on a clean
  open connection are answered;
- when the case ends (the client closes, half-closes, resets, or just stops), the server closes
  the socket within a bound; a bystander subscribed before the fuzz started has received every
  broadcast published so far, in order; the gateway's descriptor count is back to its baseline.

Figures per attack class (cases, refused, crashes, leaks) go to ``record()`` for
docs/reliability.md.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from tests.support.processes import Gateway
from tests.support.rawws import (
    BINARY,
    CLOSE,
    CONTINUATION,
    PING,
    PONG,
    RESERVED_OPCODES,
    TEXT,
    RawClient,
    ServerOutput,
    close_payload,
    fd_count,
    frame,
    http_request,
    poll_until,
    settled_fd_count,
    upgrade_request,
)

from .conftest import LIVE_HYPOTHESIS, Bystander, port_of, record, running_gateway, token

HANDSHAKE_TIMEOUT = 2.0
IDLE_TIMEOUT = 3.0
MAX_FRAME = 1_024
"""REALTIME_MAX_FRAME_BYTES: over it a message gets error 413, over four times it close 1009."""
BOUND = 15.0
"""Seconds for anything the gateway must do (answer, close) on a busy 2-core machine; polled."""
GLANCE = 0.02
"""Seconds to collect what the server sent after a step that expects nothing in particular (a
chance to check it early; every byte is checked in the end anyway)."""

CLOSE_CODES = frozenset({1000, 1001, 1002, 1003, 1007, 1008, 1009, 4000, 4001, 4008, 4029, 4401})
"""Close codes the gateway may send (docs/protocol.md); 1011 means it hit an internal error."""
FAILED_CODES = frozenset({1002, 1007})
"""The codes of a connection failed for a frame RFC 6455 forbids (docs/protocol.md)."""
IDLE_CLOSE = 4000
FUZZ_CHANNEL = "public.fuzz.frames"

REQUESTS = {
    "GET /healthz": (http_request("GET", "/healthz"), 200),
    "GET /nope": (http_request("GET", "/nope"), 404),
    "HEAD /metrics": (http_request("HEAD", "/metrics"), 200),
    "GET /client.js": (http_request("GET", "/client.js"), 200),
}
BAD_UPGRADES = {
    "no-key": upgrade_request("/ws", key=None),
    "version-8": upgrade_request("/ws", version="8"),
    "elsewhere": upgrade_request("/nope"),
    "post": upgrade_request("/ws").replace(b"GET ", b"POST ", 1),
}
BAD_CLOSE_CODES = [0, 999, 1004, 1005, 1006, 1015, 1100, 2000, 2999, 5000, 65535]
BAD_UTF8 = [b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xe2\x82", b"\xc0\xaf"]

BAD_CONTROLS = (
    "oversized-ping",
    "oversized-close",
    "fragmented-ping",
    "fragmented-pong",
    "bad-close-code",
    "one-byte-close",
    "close-reason-not-utf8",
)
FORBIDDEN_FRAMES = (
    "reserved-bits",
    "reserved-opcode",
    "unmasked",
    "stray-continuation",
    "data-inside-a-fragmented-message",
    "text-not-utf8",
    "fragmented-text-not-utf8",
)
LYING_LENGTHS = (
    "16-bit-for-short",
    "64-bit-for-short",
    "64-bit-huge",
    "64-bit-top-bit",
    "longer-than-sent",
    "shorter-than-sent",
)

PING_JSON = b'{"type":"ping"}'
SUBSCRIBE_JSON = json.dumps({"type": "subscribe", "channel": FUZZ_CHANNEL}).encode()


# -- Figures -------------------------------------------------------------------------------------


@attrs.define
class Tally:
    cases: int = 0
    refused: int = 0
    crashes: int = 0
    leaks: int = 0


TALLIES: dict[str, Tally] = {}


def tally(name: str) -> Tally:
    return TALLIES.setdefault(name, Tally())


# -- Strategies ----------------------------------------------------------------------------------

masks = st.binary(min_size=4, max_size=4)
small_payloads = st.binary(max_size=125)
utf8_texts = st.text(st.characters(codec="utf-8"), max_size=60).map(str.encode)
"""Text as UTF-8 (no lone surrogates), multi-byte characters included: fragments may cut them."""


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    """``data`` cut at the (sorted, deduplicated) positions ``cuts``: at least one piece."""
    points = sorted({cut % (len(data) + 1) for cut in cuts} - {0, len(data)})
    pieces, start = [], 0
    for point in points:
        pieces.append(data[start:point])
        start = point
    pieces.append(data[start:])
    return pieces


# -- The machine ---------------------------------------------------------------------------------


class FrameFuzzer(RuleBasedStateMachine):
    """One case: one raw connection to the gateway, driven through its states by the rules."""

    gateway: ClassVar[Gateway]
    bystander: ClassVar[Bystander]
    baseline: ClassVar[int]

    def __init__(self) -> None:
        super().__init__()
        try:
            self.client = RawClient(port_of(self.gateway))
        except ConnectionRefusedError:
            raise AssertionError(
                f"the gateway does not listen:\n{self.gateway.output()[-4000:]}"
            ) from None
        self.mask = b"\x00\x00\x00\x00"
        self.upgrade_sent = False
        self.requests_sent = 0
        self.garbled = False
        """Frame bytes went to the HTTP side before any upgrade: its answers are a 400."""
        self.client_closed = False
        """The client sent a Close frame (or half-closed the socket)."""
        self.sent_codes: set[int] = set()
        self.done = False
        """The client ended: it sends nothing more."""
        self.failed = False
        """A frame that must fail the connection was sent while it was cleanly open."""
        self.desynced = False
        """A frame whose length lies was sent: what follows may be read as its payload."""
        self.expect_1009 = False
        self.pings_after_failure: list[bytes] = []
        self.text_pings = 0
        self.text_pings_at_failure = 0
        self.classes: set[str] = set()
        self.steps: list[str] = []

    # -- What we know of the connection ----------------------------------------------------------

    @property
    def output(self) -> ServerOutput:
        return self.client.output

    @property
    def server_closed(self) -> bool:
        return self.output.close is not None or self.client.ended

    @property
    def clean_open(self) -> bool:
        """Open both ways and nothing sent that ends it: the gateway must answer."""
        return (
            self.output.upgraded
            and not self.server_closed
            and not self.client_closed
            and not self.done
            and not self.failed
            and not self.desynced
            and not self.expect_1009
        )

    def register(self, requests: list[str]) -> None:
        """Count requests about to be sent (and the upgrade after them): the answers to HEAD
        requests have no body, which the parser must be told."""
        for request in requests:
            if request.startswith("HEAD ") and not self.garbled:
                self.output.heads.add(self.requests_sent)
            self.requests_sent += 1

    def send(self, name: str, data: bytes, *, http: bool = False) -> None:
        self.classes.add(name.split(".")[0])
        self.steps.append(f"{name}: {data[:80]!r}{'...' if len(data) > 80 else ''}")
        if not http and not self.upgrade_sent:
            self.garbled = True
        if not self.done:
            self.client.send(data)

    def frame(self, opcode: int, payload: bytes = b"", **options: Any) -> bytes:
        options.setdefault("mask", self.mask)
        return frame(opcode, payload, **options)

    def must_fail(self) -> None:
        """The frame about to be sent must fail the connection, if it is cleanly open."""
        if self.clean_open:
            self.failed = True
            self.text_pings_at_failure = self.text_pings

    def expect(self, answered: Callable[[ServerOutput], bool], what: str) -> None:
        """Wait (bounded) until ``answered(output)`` or the server closes; on a connection that
        was cleanly open, the answer must come, not a close."""
        was_clean = self.clean_open
        got = self.client.read_until(lambda output: answered(output) or self.server_closed, BOUND)
        assert got, f"neither {what} nor a close within {BOUND} s; {self.story()}"
        if was_clean and not answered(self.output):
            code = self.output.close.close_code if self.output.close else None
            # Only the idle timeout may come first, on a very slow run.
            assert code == IDLE_CLOSE, f"{what}: the server closed ({code}) instead; {self.story()}"

    def story(self) -> str:
        return f"steps {self.steps}; the server sent {bytes(self.output.raw[-400:])!r}"

    def text_pongs(self) -> int:
        return sum(1 for text in self.output.texts if json.loads(text).get("type") == "pong")

    def errors(self, code: int) -> int:
        return sum(
            1
            for text in self.output.texts
            if json.loads(text).get("type") == "error" and json.loads(text)["data"]["code"] == code
        )

    # -- Opening -----------------------------------------------------------------------------

    @initialize(
        mask=masks,
        opening=st.sampled_from(
            ["upgrade", "upgrade", "upgrade", "upgrade", "bad-token", "pipelined", "later"]
        ),
        user=st.booleans(),
        requests=st.lists(st.sampled_from(sorted(REQUESTS)), min_size=1, max_size=3),
        trailing=st.lists(st.sampled_from(["ping", "text-ping", "subscribe"]), max_size=2),
        cuts=st.lists(st.integers(0, 400), max_size=2),
    )
    def open_connection(
        self,
        mask: bytes,
        opening: str,
        user: bool,
        requests: list[str],
        trailing: list[str],
        cuts: list[int],
    ) -> None:
        self.mask = mask
        if opening == "later":
            return
        target = f"/ws?token={token('7')}" if user else "/ws"
        if opening == "bad-token":
            target = "/ws?token=x"
        self.upgrade(target, requests if opening == "pipelined" else [], trailing, cuts)

    def upgrade(
        self, target: str, requests: list[str], trailing: list[str], cuts: list[int]
    ) -> None:
        """Requests, an upgrade and frames in one write (sent in pieces cut at ``cuts``)."""
        name = "pipelined-upgrade" if requests else "upgrade"
        if target.endswith("token=x"):
            name = "upgrade-with-a-bad-token"
        garbled, self.upgrade_sent = self.garbled, True
        self.register([*requests, "upgrade"])
        wire = b"".join(REQUESTS[request][0] for request in requests) + upgrade_request(target)
        frames = {
            "ping": self.frame(PING, b"trailing"),
            "text-ping": self.frame(TEXT, PING_JSON),
            "subscribe": self.frame(TEXT, SUBSCRIBE_JSON),
        }
        wire += b"".join(frames[kind] for kind in trailing)
        self.text_pings += trailing.count("text-ping")
        before = len(self.output.answers)
        for piece in split(wire, cuts):
            self.send(name, piece, http=True)
        count = before + len(requests) + 1
        self.client.read_until(lambda output: len(output.answers) >= count, BOUND)
        answers = self.output.answers[before:]
        if garbled:
            return  # the server refused the bytes before these (400) and closes
        assert len(answers) > len(requests) or self.client.ended, (
            f"the upgrade was neither answered nor refused within {BOUND} s; {self.story()}"
        )
        statuses = [answer.status for answer in answers]
        expected = [REQUESTS[request][1] for request in requests]
        assert statuses[: len(requests)] == expected, f"{requests}: {statuses}; {self.story()}"
        if len(answers) == len(requests):
            assert requests, f"a plain upgrade closed without an answer; {self.story()}"
            return  # a pipelined upgrade refused by closing the socket
        status = answers[len(requests)].status
        if requests:
            assert status == 101 or 400 <= status < 500, f"answered {status}; {self.story()}"
        else:
            assert status == 101, f"a plain upgrade answered {status}; {self.story()}"
        if status != 101:
            return
        assert self.client.read_until(lambda output: bool(output.texts), BOUND), self.story()
        first = json.loads(self.output.texts[0])
        if name == "upgrade-with-a-bad-token":
            assert first["type"] == "error" and first["data"]["code"] == 401, first
            assert self.client.read_until(lambda output: output.close is not None, BOUND), (
                f"a bad token but no close; {self.story()}"
            )
            assert self.output.close is not None and self.output.close.close_code == 4401
        else:
            assert first["type"] == "connected", first

    # -- Before the upgrade ------------------------------------------------------------------

    @precondition(lambda self: not self.upgrade_sent and not self.done)
    @rule(
        requests=st.lists(st.sampled_from(sorted(REQUESTS)), max_size=3),
        trailing=st.lists(st.sampled_from(["ping", "text-ping", "subscribe"]), max_size=2),
        cuts=st.lists(st.integers(0, 400), max_size=2),
        user=st.booleans(),
    )
    def upgrade_now(
        self, requests: list[str], trailing: list[str], cuts: list[int], user: bool
    ) -> None:
        self.upgrade(f"/ws?token={token('8')}" if user else "/ws", requests, trailing, cuts)

    @precondition(lambda self: not self.upgrade_sent and not self.done)
    @rule(requests=st.lists(st.sampled_from(sorted(REQUESTS)), min_size=1, max_size=4))
    def keep_alive_requests(self, requests: list[str]) -> None:
        """Requests in one write, answered in order on the kept-alive connection."""
        before = len(self.output.answers)
        self.register(requests)
        wire = b"".join(REQUESTS[request][0] for request in requests)
        self.send("pipelined-requests", wire, http=True)
        count = before + len(requests)
        answered = self.client.read_until(lambda output: len(output.answers) >= count, BOUND)
        if self.garbled:
            return
        assert answered, f"{requests} not all answered within {BOUND} s; {self.story()}"
        statuses = [answer.status for answer in self.output.answers[before:]]
        assert statuses == [REQUESTS[request][1] for request in requests], (
            f"{requests} answered {statuses}; {self.story()}"
        )

    @precondition(lambda self: not self.upgrade_sent and not self.done)
    @rule(variant=st.sampled_from(sorted(BAD_UPGRADES)))
    def bad_upgrade(self, variant: str) -> None:
        """A malformed upgrade: refused with a 4xx (or the socket closed), never served."""
        garbled, self.upgrade_sent = self.garbled, True
        before = len(self.output.answers)
        self.register(["upgrade"])
        self.send("bad-upgrade", BAD_UPGRADES[variant], http=True)
        self.client.read_until(lambda output: len(output.answers) > before, BOUND)
        answers = self.output.answers[before:]
        if garbled:
            return
        assert answers or self.client.ended, f"{variant}: no answer; {self.story()}"
        if answers:
            assert 400 <= answers[0].status < 500, f"{variant}: {answers[0]}; {self.story()}"

    # -- Control frames, in every state --------------------------------------------------------

    @precondition(lambda self: not self.done)
    @rule(payload=small_payloads)
    def ping(self, payload: bytes) -> None:
        """Answered with a pong of the same payload while the connection is open."""
        clean = self.clean_open
        if self.failed and not self.client_closed:
            payload = b"after-failure-%d" % len(self.pings_after_failure)
            self.pings_after_failure.append(payload)
        self.send("control-ping", self.frame(PING, payload))
        if clean:
            self.expect(
                lambda output: any(
                    f.opcode == PONG and f.payload == payload for f in output.frames
                ),
                f"a pong to ping {payload!r}",
            )

    @precondition(lambda self: not self.done)
    @rule(payload=small_payloads)
    def unsolicited_pong(self, payload: bytes) -> None:
        self.send("control-pong", self.frame(PONG, payload))

    @precondition(lambda self: not self.done)
    @rule(
        code=st.one_of(st.none(), st.sampled_from([1000, 1001, 1003, 1008, 3000, 4000, 4999])),
        reason=utf8_texts.filter(lambda data: len(data) <= 100),
    )
    def close(self, code: int | None, reason: bytes) -> None:
        """A valid Close: the server answers with its own (or has sent it) and ends the socket."""
        self.send_close(code, reason)

    def send_close(
        self, code: int | None, reason: bytes = b"", name: str = "control-close"
    ) -> None:
        self.send(name, self.frame(CLOSE, close_payload(code, reason if code else b"")))
        if code is not None:
            self.sent_codes.add(code)
        self.client_closed = True

    @precondition(lambda self: not self.done)
    @rule(
        kind=st.sampled_from(BAD_CONTROLS),
        size=st.integers(126, 300),
        code=st.sampled_from(BAD_CLOSE_CODES),
        bad=st.sampled_from(BAD_UTF8),
    )
    def bad_control(self, kind: str, size: int, code: int, bad: bytes) -> None:
        """Control frames RFC 6455 forbids: each must fail the connection."""
        data = {
            "oversized-ping": self.frame(PING, b"p" * size),
            "oversized-close": self.frame(CLOSE, close_payload(1000, b"r" * (size - 2))),
            "fragmented-ping": self.frame(PING, b"a", fin=False) + self.frame(CONTINUATION, b"b"),
            "fragmented-pong": self.frame(PONG, b"a", fin=False) + self.frame(CONTINUATION, b"b"),
            "bad-close-code": self.frame(CLOSE, close_payload(code, b"why")),
            "one-byte-close": self.frame(CLOSE, b"\x03"),
            "close-reason-not-utf8": self.frame(CLOSE, close_payload(1000, b"ok" + bad)),
        }[kind]
        self.must_fail()
        self.send(f"bad-control.{kind}", data)
        if "close" in kind:
            self.client_closed = True

    # -- Messages ------------------------------------------------------------------------------

    @precondition(lambda self: not self.done)
    @rule(
        content=st.sampled_from(["ping", "subscribe", "text", "binary", "not-json"]),
        text=utf8_texts,
        cuts=st.lists(st.integers(0, 200), max_size=4),
        between=st.lists(st.sampled_from(["ping", "pong", "none"]), max_size=4),
    )
    def message(self, content: str, text: bytes, cuts: list[int], between: list[str]) -> None:
        """A message in continuation frames (cut anywhere, even inside a UTF-8 character), with
        pings and pongs between the fragments, as RFC 6455 allows."""
        payload = {
            "ping": PING_JSON,
            "subscribe": SUBSCRIBE_JSON,
            "text": json.dumps({"type": "event", "data": text.decode()}).encode(),
            "binary": text,
            "not-json": text + b"}",
        }[content]
        opcode = BINARY if content == "binary" else TEXT
        pieces = split(payload, cuts)
        wire = b""
        for index, piece in enumerate(pieces):
            first, last = index == 0, index == len(pieces) - 1
            wire += self.frame(opcode if first else CONTINUATION, piece, fin=last)
            if not last and index < len(between) and between[index] != "none":
                wire += self.frame(PING if between[index] == "ping" else PONG, b"between")
        clean = self.clean_open
        pongs, answers = self.text_pongs(), len(self.output.texts)
        self.text_pings += content == "ping"
        self.send("fragmented-message" if len(pieces) > 1 else "message", wire)
        if not clean:
            return
        if content == "ping":
            self.expect(lambda _: self.text_pongs() > pongs, "a pong to a fragmented ping")
        elif content == "subscribe":
            self.expect(lambda output: len(output.texts) > answers, "an answer to subscribe")

    @precondition(lambda self: not self.done)
    @rule(size=st.integers(MAX_FRAME + 1, 4 * MAX_FRAME), cuts=st.lists(st.integers(), max_size=3))
    def large_message(self, size: int, cuts: list[int]) -> None:
        """Over the frame limit, under four times it: error 413, and the connection goes on."""
        payload = json.dumps({"type": "ping", "pad": "x" * size}).encode()[: 4 * MAX_FRAME]
        pieces = split(payload, cuts)
        wire = b"".join(
            self.frame(TEXT if i == 0 else CONTINUATION, piece, fin=i == len(pieces) - 1)
            for i, piece in enumerate(pieces)
        )
        clean, refused = self.clean_open, self.errors(413)
        self.send("message-over-the-frame-limit", wire)
        if clean:
            self.expect(lambda _: self.errors(413) > refused, "error 413")

    @precondition(lambda self: not self.done)
    @rule(extra=st.integers(1, 3 * MAX_FRAME), pieces=st.integers(1, 4))
    def message_over_four_times_the_limit(self, extra: int, pieces: int) -> None:
        """Over four times the frame limit: the connection closes with 1009."""
        payload = b'{"type":"ping","pad":"' + b"x" * (4 * MAX_FRAME + extra) + b'"}'
        parts = split(payload, [len(payload) * i // pieces for i in range(1, pieces)])
        wire = b"".join(
            self.frame(TEXT if i == 0 else CONTINUATION, part, fin=i == len(parts) - 1)
            for i, part in enumerate(parts)
        )
        if self.clean_open:
            self.expect_1009 = True
        self.send("message-over-4x-the-frame-limit", wire)

    # -- Frames RFC 6455 forbids -----------------------------------------------------------------

    @precondition(lambda self: not self.done)
    @rule(
        kind=st.sampled_from(FORBIDDEN_FRAMES),
        rsv=st.integers(1, 7),
        opcode=st.sampled_from(RESERVED_OPCODES),
        bad=st.sampled_from(BAD_UTF8),
        control=st.booleans(),
    )
    def forbidden_frame(self, kind: str, rsv: int, opcode: int, bad: bytes, control: bool) -> None:
        """Each must fail the connection (1002 or 1007)."""
        data = {
            "reserved-bits": lambda: self.frame(PING if control else TEXT, PING_JSON, rsv=rsv),
            "reserved-opcode": lambda: self.frame(opcode, PING_JSON),
            "unmasked": lambda: frame(PING if control else TEXT, PING_JSON, mask=None),
            "stray-continuation": lambda: self.frame(CONTINUATION, PING_JSON),
            "data-inside-a-fragmented-message": lambda: (
                self.frame(TEXT, b'{"type":', fin=False) + self.frame(TEXT, PING_JSON)
            ),
            "text-not-utf8": lambda: self.frame(TEXT, b'{"type":"' + bad + b'"}'),
            "fragmented-text-not-utf8": lambda: (
                self.frame(TEXT, b'{"type":"', fin=False)
                + self.frame(CONTINUATION, bad, fin=False)
                + self.frame(CONTINUATION, b'"}')
            ),
        }[kind]()
        self.must_fail()
        self.send(f"forbidden.{kind}", data)

    @precondition(lambda self: not self.done)
    @rule(
        kind=st.sampled_from(LYING_LENGTHS),
        huge=st.integers(2**32, 2**62),
    )
    def lying_length(self, kind: str, huge: int) -> None:
        """Length fields that lie or are not minimal: the gateway may refuse them or wait for
        the payload (within its timeouts), but must not crash or answer garbage."""
        data = {
            "16-bit-for-short": self.frame(TEXT, PING_JSON, width=16),
            "64-bit-for-short": self.frame(TEXT, PING_JSON, width=64),
            "64-bit-huge": self.frame(TEXT, PING_JSON, length=huge, width=64),
            "64-bit-top-bit": self.frame(TEXT, PING_JSON, length=2**63 + len(PING_JSON), width=64),
            "longer-than-sent": self.frame(TEXT, PING_JSON, length=len(PING_JSON) + 40),
            "shorter-than-sent": self.frame(TEXT, PING_JSON, length=5),
        }[kind]
        self.desynced = True
        self.send(f"lying-length.{kind}", data)

    # -- Endings -------------------------------------------------------------------------------

    @precondition(lambda self: not self.done)
    @rule(
        how=st.sampled_from(["fin", "reset", "close"]),
        cut=st.integers(1, 400),
        payload=st.sampled_from([PING_JSON, SUBSCRIBE_JSON, b"x" * 300]),
    )
    def truncated_frame_then_end(self, how: str, cut: int, payload: bytes) -> None:
        whole = self.frame(TEXT, payload)
        self.send(f"truncated-frame-then-{how}", whole[: cut % (len(whole) - 1) + 1])
        self.end(how)

    @precondition(lambda self: not self.done)
    @rule(how=st.sampled_from(["fin", "reset", "stop", "close-handshake", "close-handshake"]))
    def finish(self, how: str) -> None:
        """How the client ends: the close handshake, FIN, a reset, or it stops and waits for the
        gateway's timeouts."""
        self.classes.add(f"end-by-{how}")
        if how == "close-handshake":
            self.send_close(1000, name="end-by-close-handshake")
        self.end(how)

    @precondition(lambda self: self.done)
    @rule()
    def after_the_end(self) -> None:
        """Once the client ended there is nothing to send; the invariant watches the server."""

    def end(self, how: str) -> None:
        self.steps.append(f"end: {how}")
        if how == "fin":
            self.client.shutdown_write()
            self.client_closed = True
        elif how == "reset":
            self.client.abort()
        elif how == "close":
            self.client.close()
        self.done = True

    # -- Checks --------------------------------------------------------------------------------

    @invariant()
    def gateway_lives_and_answers_well(self) -> None:
        self.client.read(GLANCE)  # every byte is checked as it is parsed
        assert self.gateway.process.poll() is None, (
            f"the gateway died; {self.story()}\n{self.gateway.output()[-4000:]}"
        )
        close = self.output.close
        if close is not None:
            code = close.close_code
            allowed = CLOSE_CODES | self.sent_codes  # a server may echo the client's code
            assert code is None or code in allowed, f"close code {code}; {self.story()}"

    def teardown(self) -> None:
        try:
            self.finish_case()
        finally:
            self.client.close()

    def finish_case(self) -> None:
        client = self.client
        if not self.done:  # the client closes it
            if not self.output.upgraded:
                self.end("fin")
            elif not self.client_closed:
                self.send_close(1000, name="end-by-close-handshake")
        if not client.closed:
            # The server must close the socket, at the latest when its handshake, idle and
            # close timeouts have run out.
            ended = client.wait_ended(HANDSHAKE_TIMEOUT + IDLE_TIMEOUT + BOUND)
            assert ended, f"the server kept the socket open; {self.story()}"
        crashed = self.gateway.process.poll() is not None
        refused = self.refused()
        for name in [*self.classes, "all"]:
            figures = tally(name)
            figures.cases += 1
            figures.refused += refused
            figures.crashes += crashed
        assert not crashed, f"the gateway died; {self.story()}\n{self.gateway.output()[-4000:]}"
        self.check_failures()
        self.bystander.check(BOUND)
        pid = self.gateway.process.pid
        try:
            poll_until(lambda: fd_count(pid) <= self.baseline, BOUND, "fds back to baseline")
        except AssertionError:
            for name in [*self.classes, "all"]:
                tally(name).leaks += 1
            raise AssertionError(
                f"the gateway holds {fd_count(pid)} fds, {self.baseline} before; {self.story()}"
            ) from None

    def refused(self) -> bool:
        close = self.output.close
        errors = any(json.loads(text).get("type") == "error" for text in self.output.texts)
        http_refusal = any(answer.status >= 400 for answer in self.output.answers)
        return errors or http_refusal or (close is not None and close.close_code != 1000)

    def check_failures(self) -> None:
        """What must have ended the connection did, with the documented code, and nothing sent
        after it was answered."""
        close = self.output.close
        code = close.close_code if close is not None else None
        # The idle close may cross the frame on a very slow run; a reset may swallow the Close
        # when the client was still sending.
        if self.expect_1009 and not self.failed:
            assert code in (1009, IDLE_CLOSE) or (close is None and self.client.reset), (
                f"a message over 4x the frame limit: close {code}, not 1009; {self.story()}"
            )
        if not self.failed:
            return
        assert code is None or code in FAILED_CODES or code == IDLE_CLOSE, (
            f"a frame that must fail the connection: close {code}; {self.story()}"
        )
        answered = [f.payload for f in self.output.frames if f.opcode == PONG]
        late = [payload for payload in self.pings_after_failure if payload in answered]
        assert not late, f"pings after the failure answered: {late}; {self.story()}"
        assert self.text_pongs() <= self.text_pings_at_failure, (
            f"a ping sent after the failure was answered; {self.story()}"
        )


# -- The test ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_gateway() -> Iterator[Gateway]:
    with running_gateway(
        REALTIME_HANDSHAKE_TIMEOUT=str(HANDSHAKE_TIMEOUT),
        REALTIME_IDLE_TIMEOUT=str(IDLE_TIMEOUT),
        REALTIME_MAX_FRAME_BYTES=str(MAX_FRAME),
    ) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def bystander(fuzz_gateway: Gateway) -> Iterator[Bystander]:
    """Subscribed to a public channel before the fuzz starts; receives a broadcast every 50 ms."""
    watcher = Bystander(fuzz_gateway, interval=0.05).start()
    yield watcher
    watcher.stop()


def test_frame_fuzzer(fuzz_gateway: Gateway, bystander: Bystander) -> None:
    baseline = settled_fd_count(fuzz_gateway.process.pid)
    machine = type(
        "LiveFrameFuzzer",
        (FrameFuzzer,),
        {"gateway": fuzz_gateway, "bystander": bystander, "baseline": baseline},
    )
    started = time.monotonic()
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(max_examples=150, stateful_step_count=8, **LIVE_HYPOTHESIS),
        )
    finally:
        seconds = round(time.monotonic() - started, 1)
        for name, tallied in sorted(TALLIES.items()):
            record(f"fuzz_frames.{name}", **attrs.asdict(tallied), seconds=seconds)
    assert TALLIES["all"].crashes == 0 and TALLIES["all"].leaks == 0
    record("fuzz_frames.bystander", **bystander.check(BOUND))
