"""``tidings subscribe`` as a user runs it: a process, its lines, its exit status."""

from __future__ import annotations

import json
import re
import signal

import pytest

from tests.conftest import SECRET
from tests.support.processes import Gateway, TidingsProcess, process_env
from tests.support.proxy import TcpProxy
from tidings.domain.message import Message
from tidings.domain.position import Position
from tidings.domain.protocol import encode_event

from .support import WAIT, port_of, publish, token, unique

SUBSCRIBED = re.compile(r"^subscribed to ")


def start(*args: str) -> TidingsProcess:
    process = TidingsProcess(["subscribe", *args], process_env(REALTIME_SECRET=SECRET))
    process.stderr.wait_for(SUBSCRIBED, WAIT)
    return process


def next_lines(process: TidingsProcess, count: int) -> list[str]:
    """The next ``count`` lines on stdout (each line is waited for once)."""
    return [process.stdout.wait_for(re.compile("^.+$"), WAIT).group() for _ in range(count)]


def test_lines_have_the_shape_of_kafka_consume_and_max_messages_ends_it(
    live_gateway: Gateway,
) -> None:
    channel = unique("public.lines")
    process = start(channel, "--url", live_gateway.url, "--max-messages", "3")
    answers = publish(live_gateway, channel, {"n": 1}, "two", [3], None)
    assert process.wait(WAIT) == 0, process.output()
    lines = process.stdout.lines
    assert len(lines) == 3  # the fourth message came after the limit
    for line, answer in zip(lines, answers, strict=False):
        envelope = json.loads(line)
        assert list(envelope) == ["id", "type", "channel", "event", "data", "timestamp", "position"]
        assert (envelope["id"], envelope["position"]) == (answer["id"], answer["position"])
        message = Message.from_dict(envelope)
        assert line == encode_event(message, Position.parse(envelope["position"]))
    assert [json.loads(line)["data"] for line in lines] == [{"n": 1}, "two", [3]]
    assert "received 3 event(s)" in process.stderr.lines[-1]
    assert process.stderr.lines[-1].endswith("(max-messages)")


@pytest.mark.parametrize("broker_env", ["memory"], indirect=True)
def test_timeout_ends_it_with_status_0(live_gateway: Gateway) -> None:
    process = start(unique("public.quiet"), "--url", live_gateway.url, "--timeout", "1")
    assert process.wait(WAIT) == 0, process.output()
    assert process.stdout.lines == []
    assert process.stderr.lines[-1].endswith("(timeout)")


def test_it_follows_a_reconnect_and_resumes_without_a_gap(live_gateway: Gateway) -> None:
    channel = unique("private-follow")
    proxy = TcpProxy(port_of(live_gateway))
    try:
        process = start(
            channel,
            "--url",
            f"http://127.0.0.1:{proxy.port}",
            "--token",
            token("7", channels=("private-**",)),
        )
        publish(live_gateway, channel, "a")
        lines = next_lines(process, 1)
        proxy.refuse()
        process.stderr.wait_for(re.compile(r"retrying in \d"), WAIT)
        publish(live_gateway, channel, "b", "c")
        proxy.accept()
        process.stderr.wait_for(re.compile(r"^connected to "), WAIT)
        publish(live_gateway, channel, "d")
        lines += next_lines(process, 3)
        process.signal(signal.SIGTERM)
        assert process.wait(WAIT) == 0, process.output()
    finally:
        proxy.close()
    assert [json.loads(line)["data"] for line in lines] == ["a", "b", "c", "d"]
    assert process.stdout.lines == lines
    assert process.stderr.lines[-1].endswith("(signal)")


@pytest.mark.parametrize("broker_env", ["memory"], indirect=True)
def test_a_refused_token_or_channel_is_one_line_and_status_1(live_gateway: Gateway) -> None:
    env = process_env(REALTIME_SECRET=SECRET)
    refused = TidingsProcess(
        ["subscribe", "user.1", "--url", live_gateway.url, "--token", "not-a-token"], env
    )
    assert refused.wait(WAIT) == 1
    assert refused.stderr.lines == [refused.stderr.lines[-1]]
    assert refused.stderr.lines[-1].startswith("tidings: token refused")

    forbidden = TidingsProcess(
        ["subscribe", "user.2", "--url", live_gateway.url, "--user", "1"], env
    )
    assert forbidden.wait(WAIT) == 1
    last = forbidden.stderr.lines[-1]
    assert last.startswith("tidings: ") and "user.2" in last and "(403)" in last

    unclear = TidingsProcess(["subscribe", "public.a", "public.b", "--since", "x-1"], env)
    assert unclear.wait(WAIT) == 2
    assert "--since" in unclear.stderr.lines[-1]
