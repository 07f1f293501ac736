"""Hypothesis-driven fuzzing of the WebSocket protocol against a running gateway (docs/protocol.md).

Thousands of generated frames: arbitrary text and bytes, JSON of random shapes, frames with a
valid ``type`` and mutated fields (wrong types, huge strings, deep nesting, lone surrogates as JSON
escapes, NaN/Infinity, duplicate keys), oversized frames, valid frames in between. Invariants:

* the gateway never crashes (process alive, ``/healthz`` 200 at the end);
* every frame gets exactly the answer the protocol documents: a reference model below says which
  (an ``error`` with code 400/401/403/404/410/413/429, or ``subscribed`` / ``unsubscribed`` /
  ``pong`` / nothing), and the connection keeps working (a ``ping`` at the end gets ``pong``);
  frames over four times ``REALTIME_MAX_FRAME_BYTES`` close it with 1009;
* every server frame is a JSON object with a known ``type``;
* a well-behaved client on a public channel keeps receiving a steady stream of broadcasts, in
  order and without a gap, during and after the fuzz.

Each frame is followed by a delimiter (an unsubscribe from a unique channel, answered by a 404
naming that channel), so every answer is attributed to the frame that caused it.
"""

from __future__ import annotations

import json
import re
import secrets
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import trio
import trio_websocket
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.support.processes import Gateway
from tests.support.wsclient import Client, connect

from .conftest import (
    DOCUMENTED_CODES,
    LIVE_HYPOTHESIS,
    SERVER_FRAME_TYPES,
    Bystander,
    assert_serving,
    metric,
    record,
    running_gateway,
    token,
    wait_until,
)

MAX_FRAME = 4096
MAX_MESSAGE = 1024
MAX_CHANNELS = 12
CLOSE_OVER = 4 * MAX_FRAME
"""trio-websocket counts a text message in characters against this limit (bytes for binary)."""

REPLY_TIMEOUT = 10.0

FUZZ_SETTINGS = {
    "REALTIME_RATE_LIMIT": "1000000",
    "REALTIME_RATE_BURST": "1000000",
    "REALTIME_MAX_FRAME_BYTES": str(MAX_FRAME),
    "REALTIME_MAX_MESSAGE_BYTES": str(MAX_MESSAGE),
    "REALTIME_MAX_CHANNELS": str(MAX_CHANNELS),
    "REALTIME_HISTORY_SIZE": "20",
}

# -- Who the fuzzing connections are -----------------------------------------------------------


@attrs.define
class Identity:
    name: str
    user: str | None
    grants: tuple[str, ...] = ()
    token: str | None = None


IDENTITIES = {
    "anonymous": Identity("anonymous", None),
    "user-1": Identity("user-1", "1", token=token("1", ttl=3600)),
    "user-2": Identity(
        "user-2",
        "2",
        ("private-grant.**",),
        token=token("2", info={"name": "Two"}, ttl=3600, channels=("private-grant.**",)),
    ),
}


def _has_surrogate(text: str) -> bool:
    return any(0xD800 <= ord(char) <= 0xDFFF for char in text)


# -- The reference model: what the protocol promises for one frame ------------------------------

_SEGMENT = r"[A-Za-z0-9_\-=@,;:]+"
_CHANNEL = re.compile(rf"{_SEGMENT}(?:\.{_SEGMENT})*")
_POSITION = re.compile(r"[0-9a-f]{12}-(0|[1-9][0-9]{0,18})")
_BARE_PREFIXES = ("presence-", "presence.", "private-", "private.", "user.")


def valid_channel(name: object) -> bool:
    return (
        isinstance(name, str)
        and 0 < len(name) <= 164
        and _CHANNEL.fullmatch(name) is not None
        and name not in _BARE_PREFIXES
    )


def kind_of(name: str) -> str:
    if name.startswith(("presence-", "presence.")):
        return "presence"
    if name.startswith(("private-", "private.", "user.")):
        return "private"
    return "public"


def _one_segment_after(name: str, prefix: str) -> bool:
    rest = name[len(prefix) :]
    return name.startswith(prefix) and bool(rest) and "." not in rest


def access(identity: Identity, name: str) -> int | None:
    """None when ``identity`` may subscribe to ``name``, else the error code (the test's rules)."""
    if kind_of(name) == "public":
        return None
    if identity.user is None:
        return 401
    if name.startswith("user."):  # everything after "user." is the owner
        return None if name[len("user.") :] == identity.user else 403
    for grant in identity.grants:
        assert grant.endswith(".**")
        prefix = grant[:-2]
        if name.startswith(prefix) and len(name) > len(prefix):
            return None
    if _one_segment_after(name, "private-team.") or _one_segment_after(name, "presence-chat."):
        return None
    if _one_segment_after(name, "private-admin."):
        return None if identity.user == "1" else 403
    return 403


DECODER_DEPTH = 1_000
"""CPython's JSON decoder gives up near the recursion limit (1000); the strategies keep every
depth far from it (<= 400 or >= 1500). The model counts depth itself: Hypothesis raises this
process's recursion limit while a test runs, so ``json.loads`` here would go deeper."""


def nesting(text: str) -> int:
    """The deepest ``[``/``{`` nesting of ``text``, outside strings."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


@attrs.define
class Expectation:
    """Acceptable answers to one frame (tuples of ``"subscribed"``, ``"pong"``, error codes...)."""

    answers: set[tuple[Any, ...]] = attrs.field(factory=set)
    close: int | None = None
    subscribes: str | None = None
    unsubscribes: str | None = None


def refuse(code: int) -> Expectation:
    return Expectation({(code,)})


def expect(payload: str | bytes, identity: Identity, held: set[str]) -> Expectation:
    """What docs/protocol.md promises for ``payload`` on a connection holding ``held``."""
    if isinstance(payload, bytes):
        if len(payload) > CLOSE_OVER:
            return Expectation(close=1009)
        return refuse(413 if len(payload) > MAX_FRAME else 400)
    if len(payload) > CLOSE_OVER:
        return Expectation(close=1009)
    if len(payload.encode()) > MAX_FRAME:
        return refuse(413)
    if nesting(payload) > DECODER_DEPTH:
        return refuse(400)  # "nested too deeply"
    try:
        frame = json.loads(payload)
    except (ValueError, RecursionError):
        return refuse(400)
    if not isinstance(frame, dict):
        return refuse(400)
    kind = frame.get("type")
    if kind == "ping":
        return Expectation({("pong",)})
    if kind not in ("subscribe", "unsubscribe", "event"):
        return refuse(400)
    name = frame.get("channel")
    if not valid_channel(name):
        return refuse(400)
    assert isinstance(name, str)
    if kind == "subscribe":
        since = frame.get("since")
        if since is not None and not (isinstance(since, str) and _POSITION.fullmatch(since)):
            return refuse(400)
        if name in held:
            return Expectation({("subscribed",)})
        if len(held) >= MAX_CHANNELS:
            return refuse(429)
        denied = access(identity, name)
        if denied:
            return refuse(denied)
        # A position this broker run never issued: the subscription is live, then 410.
        answer = ("subscribed", 410) if since is not None else ("subscribed",)
        return Expectation({answer}, subscribes=name)
    if kind == "unsubscribe":
        if name in held:
            return Expectation({("unsubscribed",)}, unsubscribes=name)
        return refuse(404)
    event = frame.get("event")
    if not isinstance(event, str) or not event.startswith("client-"):
        return refuse(400)
    if len(event) > 200 or not event.isprintable():
        return refuse(400)
    if kind_of(name) == "public" or name not in held:
        return refuse(403)
    try:
        data = json.dumps(
            frame.get("data"), ensure_ascii=False, allow_nan=False, separators=(",", ":")
        )
        size = len(data.encode())
    except (ValueError, TypeError, RecursionError):
        return refuse(400)
    if size > MAX_MESSAGE:
        return refuse(413)
    if size + len(name) + len(event.encode()) + 200 < MAX_MESSAGE:
        return Expectation({()})  # published to the others; nothing comes back to the sender
    return Expectation({(), (413,)})


# -- Strategies ----------------------------------------------------------------------------------


@attrs.frozen
class Raw:
    """JSON text placed as is (deep nesting, odd literals)."""

    text: str


surrogates = st.integers(0xD800, 0xDFFF).map(chr)
any_text = st.text(st.one_of(st.characters(), surrogates), max_size=24)
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    any_text,
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(any_text, inner, max_size=4),
    max_leaves=6,
)


def _nest(depth: int, kind: str) -> Raw:
    if kind == "list":
        return Raw("[" * depth + "]" * depth)
    return Raw('{"a":' * depth + "1" + "}" * depth)


# Depths well below or well above the JSON decoder's recursion limit (~1000 in CPython 3.11), so
# the model and the gateway agree whatever their stack depth.
deep_values = st.builds(
    _nest,
    st.one_of(st.integers(1, 400), st.integers(1_500, 2_000)),
    st.sampled_from(["list", "dict"]),
).filter(lambda raw: len(raw.text) < MAX_FRAME - 200)

odd_literals = st.sampled_from(
    [
        Raw("NaN"),
        Raw("Infinity"),
        Raw("-Infinity"),
        Raw("1e999"),
        Raw("-0"),
        Raw("1" * 5000),
        Raw('"\\ud800"'),
        Raw('"\\udfff\\ud800"'),
        Raw('"\\u0000"'),
        Raw('"a\\nb"'),
    ]
)

SEGMENT_CHARS = "abcXYZ019_-=@,;:"

VALID_CHANNELS = [
    "public.news",
    "chat.1",
    "dashboard.metrics",
    "admin.orders",
    "user.1",
    "user.2",
    "user.1.inbox",
    "private-team.a",
    "private-team.a.b",
    "private-admin.x",
    "private-grant.z",
    "private-grant.z.y",
    "private-x.y",
    "private.q",
    "presence-chat.r",
    "presence-chat.r.s",
    "presence.z",
    "presence-chat.s",
]
channel_names = st.one_of(
    st.sampled_from(VALID_CHANNELS),
    st.lists(st.text(SEGMENT_CHARS, min_size=1, max_size=6), min_size=1, max_size=3).map(".".join),
)
odd_channels = st.one_of(
    st.sampled_from(
        [
            "",
            ".",
            "a..b",
            ".a",
            "a.",
            "presence-",
            "private-",
            "user.",
            "presence.",
            "private.",
            "a b",
            "chat.1\n",
            "chät.1",
            "user.\uff11",
            "x" * 165,
            "public/news",
            "chat.*",
            "ÿ",
            "\u200b",
            "\x00",
        ]
    ),
    any_text,
    st.text(st.sampled_from("abc.-_:;,=@*/ \t"), max_size=20),
    st.integers(),
    st.floats(),
    st.booleans(),
    st.none(),
    st.lists(st.sampled_from(VALID_CHANNELS), max_size=2),
    st.dictionaries(st.just("name"), st.sampled_from(VALID_CHANNELS), max_size=1),
    odd_literals,
)
channel_values = st.one_of(channel_names, channel_names, odd_channels)
since_values = st.one_of(
    st.none(),
    st.from_regex(r"[0-9a-f]{12}-(0|[1-9][0-9]{0,18})", fullmatch=True),
    st.sampled_from(
        [
            "ABCDEF012345-1",
            "abcdef01234-1",
            "abcdef012345-01",
            "abcdef012345--1",
            "abcdef012345-" + "9" * 20,
            "abcdef012345",
            "-1",
            "",
            "abcdef012345-1 ",
        ]
    ),
    any_text,
    st.integers(),
    st.floats(),
    odd_literals,
)
event_values = st.one_of(
    st.sampled_from(
        [
            "client-typing",
            "client-x",
            "client-",
            "typing",
            "presence.join",
            "client-" + "x" * 250,
            "client-\x00",
            "client-\u2028",
            "CLIENT-x",
        ]
    ),
    st.builds(lambda tail: "client-" + tail, any_text),
    any_text,
    st.integers(),
    st.none(),
    st.lists(st.just("client-x"), max_size=1),
    odd_literals,
)
data_values = st.one_of(
    json_values,
    deep_values,
    odd_literals,
    st.integers(MAX_MESSAGE - 300, MAX_MESSAGE + 600).map(lambda n: "d" * n),
)
type_values = st.one_of(
    st.sampled_from(["subscribe", "unsubscribe", "event", "ping"]),
    st.sampled_from(["subscribe", "unsubscribe", "event", "ping"]),
    st.sampled_from(
        [
            "SUBSCRIBE",
            "Ping",
            "",
            "pong",
            "error",
            "connected",
            "subscribed",
            "ping ",
            "sub\u0000scribe",
            "x" * 300,
        ]
    ),
    st.integers(),
    st.none(),
    st.lists(st.just("ping"), max_size=1),
    odd_literals,
)


def _encode(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Raw):
        return value.text
    return json.dumps(value, ensure_ascii=ascii_only or _text_has_surrogate(value))


def _text_has_surrogate(value: Any) -> bool:
    return _has_surrogate(json.dumps(value, ensure_ascii=False))


FIELDS = {
    "channel": channel_values,
    "since": since_values,
    "event": event_values,
    "data": data_values,
}


@st.composite
def typed_frames(draw: st.DrawFn) -> tuple[str, str]:
    """An object with a (mostly valid) ``type`` and mutated fields, written by hand so it may
    repeat a key (the last one wins, as in every JSON parser the gateway might use)."""
    pairs: list[tuple[str, Any]] = []
    if draw(st.integers(0, 19)):
        pairs.append(("type", draw(type_values)))
    for key, values in FIELDS.items():
        if draw(st.booleans()) or (key == "channel" and draw(st.integers(0, 4))):
            pairs.append((key, draw(values)))
    if draw(st.integers(0, 3)) == 0:
        pairs.append((draw(any_text), draw(json_scalars)))
    if draw(st.integers(0, 7)) == 0:
        pairs.append((draw(st.sampled_from([*FIELDS, "type"])), draw(json_scalars)))
    pairs = draw(st.permutations(pairs)) if draw(st.integers(0, 3)) == 0 else pairs
    ascii_only = draw(st.booleans())
    text = (
        "{"
        + ",".join(f"{json.dumps(key)}:{_encode(value, ascii_only)}" for key, value in pairs)
        + "}"
    )
    return "typed", text


@st.composite
def valid_frames(draw: st.DrawFn) -> tuple[str, str]:
    kind = draw(st.sampled_from(["ping", "subscribe", "unsubscribe", "event"]))
    frame: dict[str, Any] = {"type": kind}
    if kind != "ping":
        frame["channel"] = draw(st.sampled_from(VALID_CHANNELS))
    if kind == "event":
        frame["event"] = draw(st.sampled_from(["client-typing", "client-moved"]))
        frame["data"] = draw(st.dictionaries(st.sampled_from("xyz"), st.integers(), max_size=3))
    return "valid", json.dumps(frame)


def _truncations(text: str, cut: int) -> str:
    return text[: cut % (len(text) + 1)]


junk_json = st.one_of(
    st.sampled_from(
        [
            "",
            " ",
            "{",
            "}",
            "[",
            "null",
            "true",
            "0",
            '""',
            "[]",
            "{}",
            "NaN",
            '{"type":"ping"',
            '{"type":"ping"} x',
            '\ufeff{"type":"ping"}',
            "{'type':'ping'}",
            '{"type":ping}',
            '{"type":"ping",}',
            '{type:"ping"}',
            '[{"type":"ping"}]',
            '"{\\"type\\":\\"ping\\"}"',
            '{"type":"ping"}\n{"type":"ping"}',
            "\x00",
            '{"type":"\\ud800"}',
        ]
    ),
    st.builds(_truncations, typed_frames().map(lambda pair: pair[1]), st.integers(0, 10_000)),
)


def _render_json(value: Any, ascii_only: bool) -> str:
    if isinstance(value, Raw):
        return value.text
    return json.dumps(value, ensure_ascii=ascii_only or _text_has_surrogate(value))


random_json = st.builds(
    _render_json, st.one_of(json_values, deep_values, odd_literals), st.booleans()
)

raw_frames = st.one_of(
    st.tuples(st.just("text"), st.text(max_size=300)),
    st.tuples(st.just("bytes"), st.binary(max_size=300)),
    st.tuples(st.just("json"), random_json),
    st.tuples(st.just("junk-json"), junk_json),
    st.tuples(
        st.just("deep"),
        deep_values.map(
            lambda raw: (
                raw.text
                if raw.text.startswith("[")
                else '{"type":"subscribe","channel":"chat.1","since":' + raw.text + "}"
            )
        ),
    ),
)

# Sizes around both limits: 413 under 4x the frame limit, close 1009 over it.
oversized_frames = st.one_of(
    st.tuples(
        st.just("over-limit"),
        st.integers(MAX_FRAME - 20, CLOSE_OVER).map(
            lambda n: '{"type":"ping","pad":"' + "p" * n + '"}'
        ),
    ),
    st.tuples(
        st.just("over-limit"),
        st.integers(MAX_FRAME // 3, CLOSE_OVER // 4).map(
            lambda n: '{"type":"ping","pad":"' + "\u20ac" * n + '"}'
        ),
    ),  # 3 bytes a character
    st.tuples(
        st.just("over-limit"), st.integers(MAX_FRAME - 20, CLOSE_OVER).map(lambda n: b"\x00" * n)
    ),
    st.tuples(
        st.just("over-close"),
        st.integers(CLOSE_OVER - 40, 3 * CLOSE_OVER).map(
            lambda n: '{"type":"subscribe","channel":"' + "c" * n + '"}'
        ),
    ),
    st.tuples(
        st.just("over-close"),
        st.integers(CLOSE_OVER + 1, 2 * CLOSE_OVER).map(lambda n: b"\xff" * n),
    ),
)

# -- Driving a connection ------------------------------------------------------------------------


@attrs.define
class Tally:
    frames: Counter[str] = attrs.field(factory=Counter)
    answers: Counter[str] = attrs.field(factory=Counter)
    refusals: Counter[int] = attrs.field(factory=Counter)
    closes: Counter[int] = attrs.field(factory=Counter)
    connections: int = 0
    examples: int = 0
    seconds: float = 0.0

    def figures(self) -> dict[str, Any]:
        return {
            "frames_total": sum(self.frames.values()),
            "frames_by_category": dict(self.frames),
            "answers": dict(self.answers),
            "refusals_by_code": {str(code): n for code, n in sorted(self.refusals.items())},
            "closes_by_code": {str(code): n for code, n in sorted(self.closes.items())},
            "connections": self.connections,
            "examples": self.examples,
            "seconds": round(self.seconds, 1),
        }


def check_server_frame(frame: Any) -> None:
    """Every server frame: a JSON object of a known type; errors carry a documented code."""
    assert isinstance(frame, dict), frame
    assert frame.get("type") in SERVER_FRAME_TYPES, frame
    if frame["type"] == "error":
        data = frame.get("data")
        assert isinstance(data, dict), frame
        assert data.get("code") in DOCUMENTED_CODES | {503}, frame
        assert isinstance(data.get("message"), str) and data["message"], frame
        assert "channel" not in frame or isinstance(frame["channel"], str), frame


async def answers_until(client: Client, marker: str, tally: Tally) -> tuple[Any, ...]:
    """The non-event frames before the delimiter's 404 on ``marker``, as answer tokens."""
    found: list[Any] = []
    while True:
        frame = await client.recv(REPLY_TIMEOUT)
        client.seen.clear()
        check_server_frame(frame)
        kind = frame["type"]
        if kind == "error":
            code = frame["data"]["code"]
            if frame.get("channel") == marker:
                assert code == 404, frame
                return tuple(found)
            tally.refusals[code] += 1
            found.append(code)
        elif kind != "event":
            tally.answers[kind] += 1
            found.append(kind)


async def expect_close(client: Client) -> int:
    """Frames until the server closes; none but events may come first. The close code."""
    with trio.fail_after(REPLY_TIMEOUT):
        while True:
            try:
                frame = await client.recv(REPLY_TIMEOUT)
            except trio_websocket.ConnectionClosed as exc:
                assert exc.reason is not None
                return int(exc.reason.code)
            check_server_frame(frame)
            assert frame["type"] == "event", f"expected a close, got {frame}"


async def drive(
    gateway: Gateway, identity: Identity, frames: list[tuple[str, str | bytes]], tally: Tally
) -> None:
    """Send ``frames`` one by one, each followed by the delimiter, and check every answer."""
    tally.examples += 1
    started = time.monotonic()
    pending = list(frames)
    while pending:
        async with connect(gateway.ws_url, identity.token) as client:
            tally.connections += 1
            assert client.connected["type"] == "connected", client.connected
            assert client.connected["data"]["user_id"] == identity.user
            held: set[str] = set()
            closed = False
            while pending and not closed:
                category, payload = pending.pop(0)
                tally.frames[category] += 1
                wanted = expect(payload, identity, held)
                await client.send_raw(payload)
                if wanted.close is not None:
                    code = await expect_close(client)
                    tally.closes[code] += 1
                    assert code == wanted.close, (category, payload[:200], code)
                    closed = True
                    break
                marker = f"delimiter.{secrets.token_hex(6)}"
                await client.send(type="unsubscribe", channel=marker)
                got = await answers_until(client, marker, tally)
                assert got in wanted.answers, (
                    f"{identity.name} holding {sorted(held)} sent {category} frame "
                    f"{payload[:300]!r}: got {got}, expected one of {wanted.answers}"
                )
                if wanted.subscribes and got and got[0] == "subscribed":
                    held.add(wanted.subscribes)
                if wanted.unsubscribes and got == ("unsubscribed",):
                    held.discard(wanted.unsubscribes)
            if not closed:
                await client.send(type="ping")
                last = await client.expect(REPLY_TIMEOUT, type="pong")
                assert last == {"type": "pong"}
    tally.seconds += time.monotonic() - started
    assert gateway.process.poll() is None, f"gateway died:\n{gateway.output()[-6000:]}"


# -- Fixtures ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fuzz_gateway() -> Iterator[Gateway]:
    """Generous rate limits (so the limiter masks nothing), small frame and message limits."""
    with running_gateway(**FUZZ_SETTINGS) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def bystander(fuzz_gateway: Gateway) -> Iterator[Bystander]:
    watcher = Bystander(fuzz_gateway).start()
    yield watcher
    record("fuzz_protocol.bystander", **watcher.stop())


TALLIES: dict[str, Tally] = {}


@pytest.fixture(scope="module")
def tallies() -> Iterator[dict[str, Tally]]:
    yield TALLIES
    for name, tally in TALLIES.items():
        record(f"fuzz_protocol.{name}", **tally.figures())


def tally_for(tallies: dict[str, Tally], name: str) -> Tally:
    return tallies.setdefault(name, Tally())


async def finish(gateway: Gateway, bystander: Bystander, tally: Tally) -> None:
    """After a fuzz run: still serving, the bystander saw every broadcast, nothing leaked."""
    await trio.to_thread.run_sync(assert_serving, gateway)
    await trio.to_thread.run_sync(bystander.check)
    await wait_until(
        lambda: metric(gateway, "tidings_connections") <= 1,
        10,
        "every fuzzing connection closed (only the bystander's left)",
    )
    assert tally.frames, "no frame was tried"


# -- The fuzz tests ------------------------------------------------------------------------------

identities = st.sampled_from(sorted(IDENTITIES))


@settings(max_examples=70, **LIVE_HYPOTHESIS)
@given(
    who=identities,
    frames=st.lists(
        st.one_of(typed_frames(), typed_frames(), typed_frames(), valid_frames()),
        min_size=30,
        max_size=60,
    ),
)
async def test_frames_with_a_valid_type_and_mutated_fields(
    fuzz_gateway: Gateway,
    bystander: Bystander,
    tallies: dict[str, Tally],
    who: str,
    frames: list[tuple[str, str]],
) -> None:
    await drive(fuzz_gateway, IDENTITIES[who], frames, tally_for(tallies, "mutated_fields"))


@settings(max_examples=40, **LIVE_HYPOTHESIS)
@given(
    who=identities,
    frames=st.lists(st.one_of(raw_frames, raw_frames, valid_frames()), min_size=30, max_size=60),
)
async def test_arbitrary_text_bytes_and_json_shapes(
    fuzz_gateway: Gateway,
    bystander: Bystander,
    tallies: dict[str, Tally],
    who: str,
    frames: list[tuple[str, str | bytes]],
) -> None:
    await drive(fuzz_gateway, IDENTITIES[who], frames, tally_for(tallies, "raw"))


@settings(max_examples=15, **LIVE_HYPOTHESIS)
@given(
    who=identities,
    frames=st.lists(st.one_of(oversized_frames, valid_frames()), min_size=1, max_size=8),
)
async def test_oversized_frames_are_refused_or_closed_with_1009(
    fuzz_gateway: Gateway,
    bystander: Bystander,
    tallies: dict[str, Tally],
    who: str,
    frames: list[tuple[str, str | bytes]],
) -> None:
    await drive(fuzz_gateway, IDENTITIES[who], frames, tally_for(tallies, "oversized"))


async def test_after_the_fuzz_the_gateway_serves_and_the_bystander_lost_nothing(
    fuzz_gateway: Gateway,
    bystander: Bystander,
    tallies: dict[str, Tally],
) -> None:
    tally = tally_for(tallies, "mutated_fields")
    await finish(fuzz_gateway, bystander, tally)
    total = sum(sum(t.frames.values()) for t in tallies.values())
    assert total >= 2_000, f"only {total} frames were tried"
    # A fresh client still gets the whole protocol right.
    async with connect(fuzz_gateway.ws_url, IDENTITIES["user-1"].token) as client:
        await client.subscribe("user.1")
        await client.send(type="ping")
        assert await client.recv(REPLY_TIMEOUT) == {"type": "pong"}


# -- With the default limits: the rate limiter in the way ---------------------------------------


@pytest.fixture(scope="module")
def default_gateway() -> Iterator[Gateway]:
    with running_gateway() as gateway:
        yield gateway


@pytest.fixture(scope="module")
def default_bystander(default_gateway: Gateway) -> Iterator[Bystander]:
    watcher = Bystander(default_gateway).start()
    yield watcher
    record("fuzz_protocol.default_limits.bystander", **watcher.stop())


ALLOWED_CLOSES = {4029, 1009}


async def blast(
    gateway: Gateway, identity: Identity, frames: list[tuple[str, str | bytes]], tally: Tally
) -> None:
    """Send every frame as fast as possible while reading; then ping until a pong (the bucket
    refills at 50 frames/s) unless the gateway cut the flood (4029)."""
    tally.examples += 1
    started = time.monotonic()
    async with connect(gateway.ws_url, identity.token) as client:
        tally.connections += 1
        closed: list[int] = []

        done = trio.Event()
        finished = trio.Event()

        async def read() -> None:
            try:
                await read_until_answered()
            finally:
                finished.set()

        async def read_until_answered() -> None:
            while True:
                try:
                    frame = await client.recv(REPLY_TIMEOUT)
                except trio_websocket.ConnectionClosed as exc:
                    assert exc.reason is not None
                    closed.append(int(exc.reason.code))
                    return
                client.seen.clear()
                check_server_frame(frame)
                if frame["type"] == "error":
                    tally.refusals[frame["data"]["code"]] += 1
                else:
                    tally.answers[frame["type"]] += 1
                    if frame["type"] == "pong" and done.is_set():
                        return

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            for category, payload in frames:
                tally.frames[category] += 1
                try:
                    await client.send_raw(payload)
                except trio_websocket.ConnectionClosed:
                    break
            done.set()
            with trio.fail_after(REPLY_TIMEOUT):
                while not finished.is_set():
                    try:
                        await client.send(type="ping")
                    except trio_websocket.ConnectionClosed:
                        await finished.wait()
                    with trio.move_on_after(0.1):
                        await finished.wait()
        tally.seconds += time.monotonic() - started
        for code in closed:
            tally.closes[code] += 1
            assert code in ALLOWED_CLOSES, f"closed with {code}"


@settings(max_examples=12, **LIVE_HYPOTHESIS)
@given(
    who=identities,
    frames=st.lists(
        st.one_of(typed_frames(), raw_frames, valid_frames()), min_size=100, max_size=350
    ),
)
async def test_fuzz_with_default_limits(
    default_gateway: Gateway,
    default_bystander: Bystander,
    tallies: dict[str, Tally],
    who: str,
    frames: list[tuple[str, str | bytes]],
) -> None:
    await blast(default_gateway, IDENTITIES[who], frames, tally_for(tallies, "default_limits"))


async def test_after_the_default_limits_fuzz_the_gateway_serves(
    default_gateway: Gateway,
    default_bystander: Bystander,
    tallies: dict[str, Tally],
) -> None:
    tally = tally_for(tallies, "default_limits")
    await finish(default_gateway, default_bystander, tally)
    assert tally.refusals[429] > 0, "the default rate limit never refused a frame"


# -- A crash found by this fuzzer, fixed in d8d9968: kept as a regression test ------------------


@pytest.mark.parametrize("kind", ["subscribe", "unsubscribe", "event"])
async def test_lone_surrogate_channel_is_refused_and_the_gateway_serves_on(kind: str) -> None:
    """An invalid channel is quoted in the error frame; a lone surrogate in it (``"\\ud800"``
    in the JSON) once raised UnicodeEncodeError in the writer and killed the whole gateway.
    Its own gateway, so a regression cannot take the shared ones down."""
    with running_gateway() as gateway:
        async with connect(gateway.ws_url) as client:
            frame = '{"type":"' + kind + '","channel":"chat.\\ud800","event":"client-x"}'
            await client.send_raw(frame)
            error = await client.recv(REPLY_TIMEOUT)
            assert error["type"] == "error" and error["data"]["code"] == 400, error
            assert error["channel"] == "chat.\ud800", error
            await client.send(type="ping")
            assert await client.recv(REPLY_TIMEOUT) == {"type": "pong"}
        await trio.to_thread.run_sync(assert_serving, gateway)
