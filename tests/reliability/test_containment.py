"""Containment: nothing a client sends may end the gateway or keep a descriptor (issue #12).

Each test reproduces one finding of issue #12 exactly as it was found, with nothing but a socket
(``tests/support/rawws.py`` builds the frames by hand and checks every byte the server answers),
against a real ``tidings serve`` process on the memory broker. ``running_gateway`` asserts on
leaving that the process was still alive and exits 0 on SIGTERM, so a test whose input killed
the gateway fails there even when everything else looked fine.

Findings covered: a Ping (or an oversized message) after the server's Close, whatever the close
was for (a bad token, the idle timeout, a flood); a keep-alive request and an upgrade in one
write, then any byte; fifty such half-finished upgrades and their descriptors; and a client
stalled at every stage of a connection's life, which must be dropped within the configured
timeouts.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from tests.support.processes import Gateway
from tests.support.rawws import (
    CLOSE,
    PING,
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

from .conftest import Bystander, assert_serving, port_of, record, running_gateway

IDLE_TIMEOUT = 3.0
"""Small, so the idle close comes soon, yet above the bystander's one ping a second."""
HANDSHAKE_TIMEOUT = 2.0
MAX_FRAME = 1_024
"""REALTIME_MAX_FRAME_BYTES: a message over four times it (4 KiB) closes with 1009."""
RATE, BURST = 5, 5
"""A small rate limit, so a flood is cut (4029) after about 200 refusals: one write of 400."""
BOUND = 15.0
"""Seconds allowed on top of a configured timeout for what it bounds, on a busy 2-core machine.
Tests poll against it; nothing waits for it unless the gateway misbehaves."""

SETTINGS = {
    "REALTIME_IDLE_TIMEOUT": str(IDLE_TIMEOUT),
    "REALTIME_HANDSHAKE_TIMEOUT": str(HANDSHAKE_TIMEOUT),
    "REALTIME_MAX_FRAME_BYTES": str(MAX_FRAME),
    "REALTIME_RATE_LIMIT": str(RATE),
    "REALTIME_RATE_BURST": str(BURST),
}
TEXT_PING = frame(TEXT, b'{"type":"ping"}')
TOO_BIG = frame(TEXT, json.dumps({"type": "ping", "pad": "x" * (5 * MAX_FRAME)}).encode())


@pytest.fixture
def gateway() -> Iterator[Gateway]:
    """A gateway of its own for each test: one a test kills must not fail the next."""
    with running_gateway(**SETTINGS) as process:
        yield process


def connected(client: RawClient, target: str = "/ws") -> dict[str, object]:
    """Upgrade ``client`` and return the gateway's first frame, decoded."""
    answer = client.upgrade(target)
    assert answer.status == 101, answer
    first: dict[str, object] = json.loads(client.first_text())
    return first


def has_close(output: ServerOutput) -> bool:
    return output.close is not None


def later_broadcasts_arrive(gateway: Gateway, bystander: Bystander) -> dict[str, int]:
    """The bystander, connected before the attack, also receives broadcasts sent after it."""
    after = bystander.published + 3
    poll_until(
        lambda: bystander.published >= after or bystander.failure is not None,
        BOUND,
        "three more broadcasts published to the bystander",
    )
    figures = bystander.stop()
    assert_serving(gateway)
    return figures


# -- 1. A Ping (or an oversized message) after the server's Close --------------------------------


def close_for_bad_token(client: RawClient) -> None:
    first = connected(client, "/ws?token=x")
    assert first["type"] == "error", first


def close_for_idleness(client: RawClient) -> None:
    first = connected(client)
    assert first["type"] == "connected", first


def close_for_flooding(client: RawClient) -> None:
    first = connected(client)
    assert first["type"] == "connected", first
    client.send(TEXT_PING * 400)


def close_for_size(client: RawClient) -> None:
    first = connected(client)
    assert first["type"] == "connected", first
    client.send(TOO_BIG)


TRIGGERS: dict[str, tuple[Callable[[RawClient], None], int]] = {
    "bad-token": (close_for_bad_token, 4401),
    "idle": (close_for_idleness, 4000),
    "flood": (close_for_flooding, 4029),
    "message-over-4x-the-frame-limit": (close_for_size, 1009),
}
AFTER = {
    "ping": frame(PING, b"are you there"),
    "message-over-4x-the-frame-limit": TOO_BIG,
}


@pytest.mark.parametrize("after", sorted(AFTER))
@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_a_frame_after_the_servers_close_leaves_the_gateway_serving(
    gateway: Gateway, trigger: str, after: str
) -> None:
    """Issue #12, finding 1: the server closes (4401, 4000, 4029 or 1009), the client does not
    answer the Close but sends one more frame. The server answers nothing (it already sent its
    Close: nothing may follow it), drops the socket in bounded time, and everybody else
    is served on: a bystander connected before still gets every broadcast."""
    bystander = Bystander(gateway, interval=0.05).start()
    provoke, code = TRIGGERS[trigger]
    with RawClient(port_of(gateway)) as client:
        provoke(client)
        assert client.read_until(has_close, IDLE_TIMEOUT + BOUND), (
            f"no Close frame from the server: {client.output.raw[-300:]!r}"
        )
        assert client.output.close is not None
        assert client.output.close.close_code == code, client.output.close
        client.send(AFTER[after])
        assert client.wait_ended(BOUND), "the server kept the socket open after its Close"
    figures = later_broadcasts_arrive(gateway, bystander)
    record("containment.frame_after_close", trigger=trigger, after=after, close=code, **figures)


def test_a_message_over_four_times_the_frame_limit_closes_with_1009(gateway: Gateway) -> None:
    """Issue #12, finding 1, last case: the oversized message itself, its tail still arriving
    after the server's Close (sent in pieces), closes with 1009 and the gateway lives."""
    bystander = Bystander(gateway, interval=0.05).start()
    with RawClient(port_of(gateway)) as client:
        first = connected(client)
        assert first["type"] == "connected", first
        for start in range(0, len(TOO_BIG), 512):
            if not client.send(TOO_BIG[start : start + 512]):
                break  # the server closed already: that is allowed
        assert client.read_until(has_close, BOUND), client.output.raw[-300:]
        assert client.output.close is not None
        assert client.output.close.close_code == 1009, client.output.close
        client.send(frame(PING) + frame(CLOSE, close_payload(1000)))
        assert client.wait_ended(BOUND), "the server kept the socket open after its Close"
    later_broadcasts_arrive(gateway, bystander)


# -- 2. A keep-alive request and an upgrade in one write -----------------------------------------

PIPELINED = http_request("GET", "/healthz") + upgrade_request("/ws")
EXTRA = {
    "one-byte": b"x",
    "ping-frame": frame(PING, b"p"),
    "text-ping-frame": TEXT_PING,
}


@pytest.mark.parametrize("extra", sorted(EXTRA))
def test_a_request_and_an_upgrade_in_one_write_then_more_bytes(
    gateway: Gateway, extra: str
) -> None:
    """Issue #12, finding 2: ``GET /healthz`` and a ``/ws`` upgrade in one write, then any byte.

    The request is answered; the upgrade is either served properly (101, then the gateway's
    ``connected`` frame: the WebSocket works) or refused (a 4xx, or the socket closed without a
    101); either way the server closes the socket in bounded time (the client never does), the
    process lives and gives the descriptor back."""
    pid = gateway.process.pid
    bystander = Bystander(gateway, interval=0.05).start()
    baseline = settled_fd_count(pid)
    with RawClient(port_of(gateway)) as client:
        client.send(PIPELINED)
        # The answer to the request says the gateway has read the write: the extra bytes come
        # in a read of their own, as they did when the issue was found.
        client.read_until(lambda output: bool(output.answers), BOUND)
        answers = client.output.answers
        assert answers and answers[0].status == 200, (answers, client.output.raw[:300])
        client.send(EXTRA[extra])
        answered = client.read_until(lambda output: len(output.answers) >= 2, BOUND)
        if answered and answers[1].status == 101:
            outcome = "served"
            first = json.loads(client.first_text())
            assert first["type"] == "connected", first
        else:
            outcome = "refused"
            assert not answered or 400 <= answers[1].status < 500, answers
        assert client.wait_ended(HANDSHAKE_TIMEOUT + IDLE_TIMEOUT + BOUND), (
            f"the server never closed the socket ({outcome}; it sent {client.output.raw!r})"
        )
    later_broadcasts_arrive(gateway, bystander)
    poll_until(lambda: fd_count(pid) <= baseline, BOUND, f"the fd count back to {baseline}")
    record("containment.pipelined_upgrade", extra=extra, outcome=outcome)


def test_fifty_half_finished_pipelined_upgrades_give_their_descriptors_back(
    gateway: Gateway,
) -> None:
    """Issue #12, finding 2, second half: the same write without the extra byte, fifty times.
    Half the clients then close their socket (the server's end would sit in CLOSE_WAIT), half
    keep it open and say nothing. Within the handshake timeout (or, for an upgrade that was
    served, the idle timeout) the gateway's descriptor count is back to its baseline."""
    pid = gateway.process.pid
    baseline = settled_fd_count(pid)
    clients = [RawClient(port_of(gateway)) for _ in range(50)]
    try:
        for client in clients:
            client.send(PIPELINED)
        for client in clients:
            assert client.read_until(lambda output: bool(output.answers), BOUND), client.output
            assert client.output.answers[0].status == 200, client.output.answers
        for client in clients[::2]:
            client.close()
        peak = fd_count(pid)
        poll_until(
            lambda: fd_count(pid) <= baseline,
            HANDSHAKE_TIMEOUT + IDLE_TIMEOUT + BOUND,
            f"the gateway's fd count back to {baseline} (it was {peak})",
        )
        for client in clients[1::2]:
            assert client.wait_ended(BOUND), "a half-finished upgrade was never closed"
    finally:
        for client in clients:
            client.close()
    assert_serving(gateway)
    record(
        "containment.half_finished_upgrades", tried=50, fds_before=baseline, fds_after_setup=peak
    )


# -- 3. Every stage of a connection's life under a timeout ---------------------------------------


def half_a_head(client: RawClient) -> None:
    client.send(upgrade_request("/ws")[:40])


def upgrade_and_never_read(client: RawClient) -> None:
    client.send(upgrade_request("/ws"))


def half_a_frame(client: RawClient) -> None:
    connected(client)
    client.send(TEXT_PING[:5])


def close_and_stay(client: RawClient) -> None:
    connected(client)
    client.send(frame(CLOSE, close_payload(1000, b"bye")))


def read_the_close(client: RawClient) -> None:
    assert client.read_until(has_close, IDLE_TIMEOUT + BOUND), client.output.raw[-300:]


def nothing(client: RawClient) -> None:
    pass


STAGES: dict[str, tuple[Callable[[RawClient], object], Callable[[RawClient], None]]] = {
    "half-a-request-head": (half_a_head, nothing),
    "upgrade-then-never-read": (upgrade_and_never_read, nothing),
    "open-then-half-a-frame": (half_a_frame, nothing),
    "close-then-neither-read-nor-close": (close_and_stay, nothing),
    "server-close-never-answered": (connected, read_the_close),
}
"""How a client stalls: what it does first (to every client), then what it does next."""


@pytest.fixture(scope="module")
def stages_gateway() -> Iterator[Gateway]:
    with running_gateway(**SETTINGS) as process:
        yield process


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_a_client_stalled_at_any_stage_is_dropped(stages_gateway: Gateway, stage: str) -> None:
    """Issue #12, "every stage under a timeout": five clients stall at ``stage`` and never close
    their sockets. The gateway drops each within its handshake, idle and close timeouts: its
    descriptor count returns to the baseline, and each client then reads (well-formed output
    and) the end of its stream."""
    gateway = stages_gateway
    pid = gateway.process.pid
    baseline = settled_fd_count(pid)
    clients = [RawClient(port_of(gateway)) for _ in range(5)]
    try:
        start, then = STAGES[stage]
        for client in clients:
            start(client)
        for client in clients:
            then(client)
        peak = fd_count(pid)
        poll_until(
            lambda: fd_count(pid) <= baseline,
            HANDSHAKE_TIMEOUT + IDLE_TIMEOUT + BOUND,
            f"{stage}: the gateway's fd count back to {baseline} (it was {peak})",
        )
        for client in clients:
            assert client.wait_ended(BOUND), f"{stage}: the socket is still open"
    finally:
        for client in clients:
            client.close()
    assert_serving(gateway)
    record("containment.stalled", stage=stage, clients=5, fds_before=baseline, fds_after_setup=peak)
