"""Hypothesis-driven fuzzing of the Pusher protocol (``/app/{key}``) against a running gateway.

Generated frames: arbitrary text, JSON of random shapes, and ``pusher:`` / ``client-`` frames
whose fields are mutated (wrong types, huge or strange strings, deep nesting). Each frame is
followed by a ``pusher:ping``, so its answers are those before the ``pusher:pong``. Invariants:
every server frame is a JSON object with an event Pusher's protocol knows; a malformed frame
gets a ``pusher:error`` that does not end the connection; the connection answers the ping after
every frame; the gateway is alive and healthy at the end.
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any

import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from trio_websocket import open_websocket_url

from tests.pusher_js.support import APP_KEY, PUSHER_ENV

from .conftest import LIVE_HYPOTHESIS, assert_serving, record, running_gateway

SERVER_EVENTS = {
    "pusher:error",
    "pusher:pong",
    "pusher:ping",
    "pusher:subscription_error",
    "pusher:cache_miss",
    "pusher:signin_success",
    "pusher_internal:subscription_succeeded",
    "pusher_internal:member_added",
    "pusher_internal:member_removed",
}
EVENTS = ["pusher:subscribe", "pusher:unsubscribe", "pusher:signin", "pusher:ping",
          "pusher:pong", "client-x", "pusher:other", ""]  # fmt: skip

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=12,
)
names = st.sampled_from(
    [
        "news",
        "cache-a",
        "private-a",
        "presence-a",
        "private-encrypted-a",
        "user.1",
        "#server-to-user-1",
        "a b",
        "",
        "x" * 200,
        "presence-cache-a",
    ]
) | st.text(max_size=30)
data_fields = st.fixed_dictionaries(
    {},
    optional={
        "channel": names | json_values,
        "auth": st.text(max_size=80) | json_values,
        "channel_data": st.text(max_size=80) | json_values,
        "user_data": st.text(max_size=80) | json_values,
    },
)
pusher_frames = st.fixed_dictionaries(
    {"event": st.sampled_from(EVENTS) | json_values},
    optional={
        "data": data_fields | data_fields.map(json.dumps) | json_values,
        "channel": names | json_values,
    },
).map(json.dumps)
frames = pusher_frames | st.text(max_size=2000) | json_values.map(json.dumps) | st.just("[" * 5000)


async def _exchange(url: str, sent: list[str], answers: Counter[str]) -> None:
    async with open_websocket_url(url, message_queue_size=1000) as ws:
        established = json.loads(await ws.get_message())
        assert established["event"] == "pusher:connection_established"
        for frame in sent:
            await ws.send_message(frame)
            await ws.send_message('{"event":"pusher:ping","data":{}}')
            with trio.fail_after(10):
                while True:
                    answer: Any = json.loads(await ws.get_message())
                    assert isinstance(answer, dict), answer
                    assert answer.get("event") in SERVER_EVENTS, (frame[:200], answer)
                    if answer["event"] == "pusher:error":
                        assert isinstance(answer["data"]["message"], str)
                        answers[f"error {answer['data']['code']}"] += 1
                    elif answer["event"] != "pusher:pong":
                        answers[answer["event"]] += 1
                    if answer["event"] == "pusher:pong":
                        break


def test_fuzzed_pusher_frames_get_pushers_answers_and_the_gateway_lives() -> None:
    with running_gateway(
        REALTIME_MAX_FRAME_BYTES="4096",
        REALTIME_RATE_LIMIT="100000",
        REALTIME_RATE_BURST="100000",
        **PUSHER_ENV,
    ) as gateway:
        url = gateway.url.replace("http://", "ws://", 1) + f"/app/{APP_KEY}?protocol=7"

        exchanged: list[int] = []
        answers: Counter[str] = Counter()

        @settings(max_examples=150, **LIVE_HYPOTHESIS)
        @given(st.lists(frames, min_size=1, max_size=8))
        def fuzz(sent: list[str]) -> None:
            trio.run(_exchange, url, sent, answers)
            exchanged.append(len(sent))

        fuzz()
        assert len(exchanged) >= 100  # the examples ran, against the live gateway
        assert_serving(gateway)
        record("pusher_fuzz", connections=len(exchanged), frames=sum(exchanged), **answers)
