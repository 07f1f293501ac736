"""The listener's own defences, in process: request targets, framing, limits, error boundaries."""

from __future__ import annotations

import json
import os
import struct

import trio
import trio.testing
import trio_websocket

from tidings.adapters.web import WebServer
from tidings.ports import ClientConnection, ConnectionClosed, HttpRequest, HttpResponse

UPGRADE = (
    "GET {path} HTTP/1.1\r\nhost: x\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
    "sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
)


class EchoApi:
    """Answers every request with the path and query it was routed by."""

    async def handle(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, json.dumps({"path": request.path}).encode())


class Counts:
    """The two metrics the listener reports."""

    def __init__(self) -> None:
        self.refused: list[str] = []
        self.failed = 0

    def connection_refused(self, reason: str) -> None:
        self.refused.append(reason)

    def connection_failed(self) -> None:
        self.failed += 1


async def _hold(connection: ClientConnection) -> None:
    while True:
        await connection.receive()


async def _read_all(stream: trio.SocketStream) -> bytes:
    """Everything the server sends until it closes the connection (bounded)."""
    answer = b""
    with trio.fail_after(10):
        while True:
            try:
                chunk = await stream.receive_some(65_536)
            except trio.BrokenResourceError:
                break
            if not chunk:
                break
            answer += chunk
    return answer


def _status(answer: bytes) -> int:
    return int(answer.split(b"\r\n", 1)[0].split(b" ")[1])


def _masked(opcode: int, payload: bytes) -> bytes:
    mask = os.urandom(4)
    masked = bytes(byte ^ mask[index % 4] for index, byte in enumerate(payload))
    return bytes((0x80 | opcode, 0x80 | len(payload))) + mask + masked


async def test_a_target_starting_with_two_slashes_is_a_path_not_a_host() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(WebServer("127.0.0.1", 0, EchoApi()).serve, _hold)
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(b"GET //evil.example/metrics HTTP/1.1\r\nhost: x\r\n\r\n")
            await stream.send_all(UPGRADE.format(path="//x/ws").encode())
            answer = await _read_all(stream)
        first, second = answer.split(b"HTTP/1.1 ")[1:]
        assert json.loads(first.split(b"\r\n\r\n", 1)[1]) == {"path": "//evil.example/metrics"}
        assert second.startswith(b"404 "), second
        assert b"no WebSocket at //x/ws" in second
        nursery.cancel_scope.cancel()


async def test_content_length_with_transfer_encoding_is_refused_and_the_connection_closed() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(WebServer("127.0.0.1", 0, EchoApi()).serve, _hold)
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(
                b"POST /broadcast HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n"
                b"transfer-encoding: chunked\r\n\r\n0\r\n\r\n"
                b"GET /smuggled HTTP/1.1\r\nhost: x\r\n\r\n"
            )
            answer = await _read_all(stream)  # returns only because the server closes
        assert _status(answer) == 400
        assert b"both Content-Length and Transfer-Encoding" in answer
        assert b"connection: close" in answer.lower()
        assert b"smuggled" not in answer
        nursery.cancel_scope.cancel()


async def test_connections_over_the_per_address_limit_get_429_and_are_counted() -> None:
    counts = Counts()
    server_under_test = WebServer(
        "127.0.0.1",
        0,
        EchoApi(),
        metrics=counts,
        max_connections_per_address=2,  # type: ignore[arg-type]
    )
    async with trio.open_nursery() as nursery:
        server = await nursery.start(server_under_test.serve, _hold)
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with trio_websocket.open_websocket_url(url), trio_websocket.open_websocket_url(url):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(UPGRADE.format(path="/ws").encode())
                answer = await _read_all(stream)
            assert _status(answer) == 429, answer
            assert b"127.0.0.1 has 2 connections open, the limit" in answer
            assert counts.refused == ["max_connections_per_address"]
        # Once the two are gone, a new connection is served again.
        await trio.testing.wait_all_tasks_blocked()  # the server has seen both go
        assert server.open_connections == 0
        async with trio_websocket.open_websocket_url(url) as ws:
            await ws.send_message("still serving")
        nursery.cancel_scope.cancel()


async def test_connections_over_the_total_limit_get_503() -> None:
    counts = Counts()
    server_under_test = WebServer(
        "127.0.0.1",
        0,
        EchoApi(),
        metrics=counts,
        max_connections=1,  # type: ignore[arg-type]
    )
    async with trio.open_nursery() as nursery:
        server = await nursery.start(server_under_test.serve, _hold)
        async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{server.port}/ws"):
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                answer = await _read_all(stream)
        assert _status(answer) == 503
        assert b"limit of 1 connections" in answer
        assert counts.refused == ["max_connections"]
        nursery.cancel_scope.cancel()


async def test_a_ping_after_the_server_began_closing_is_ignored_and_the_listener_lives() -> None:
    """trio-websocket's issue 184 ended the process here: a Pong cannot be sent in LOCAL_CLOSING."""

    async def close_at_once(connection: ClientConnection) -> None:
        await connection.close(4401, "bad token")

    async with trio.open_nursery() as nursery:
        server = await nursery.start(WebServer("127.0.0.1", 0, EchoApi()).serve, close_at_once)
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(UPGRADE.format(path="/ws").encode())
            answer = b""
            with trio.fail_after(10):
                while b"\x88" not in answer.partition(b"\r\n\r\n")[2]:
                    answer += await stream.receive_some(4096)
            close = answer.partition(b"\r\n\r\n")[2]
            assert struct.unpack("!H", close[2:4])[0] == 4401
            await stream.send_all(_masked(0x9, b"are you there"))
            rest = await _read_all(stream)
        assert b"\x8a" not in rest  # no pong once closing
        assert _status(await _get(server.port, "/after")) == 200
        nursery.cancel_scope.cancel()


async def test_a_failing_handler_closes_its_connection_with_1011_and_is_counted() -> None:
    counts = Counts()

    async def broken(connection: ClientConnection) -> None:
        raise RuntimeError("a bug in the handler")

    async with trio.open_nursery() as nursery:
        server_under_test = WebServer("127.0.0.1", 0, EchoApi(), metrics=counts)  # type: ignore[arg-type]
        server = await nursery.start(server_under_test.serve, broken)
        async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{server.port}/ws") as ws:
            try:
                await ws.get_message()
            except trio_websocket.ConnectionClosed as closed:
                assert closed.reason is not None and closed.reason.code == 1011
        assert counts.failed == 1
        assert _status(await _get(server.port, "/after")) == 200
        nursery.cancel_scope.cancel()


async def test_frames_pipelined_behind_the_upgrade_are_read() -> None:
    received: list[str | bytes] = []

    async def record(connection: ClientConnection) -> None:
        try:
            while True:
                received.append(await connection.receive())
        except ConnectionClosed:
            pass

    async with trio.open_nursery() as nursery:
        server = await nursery.start(WebServer("127.0.0.1", 0, EchoApi()).serve, record)
        stream = await trio.open_tcp_stream("127.0.0.1", server.port)
        async with stream:
            await stream.send_all(
                b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n"
                + UPGRADE.format(path="/ws").encode()
                + _masked(0x1, b"one")
                + _masked(0x1, b"two")
                + _masked(0x8, struct.pack("!H", 1000))
            )
            answer = await _read_all(stream)
        assert answer.count(b"HTTP/1.1 200") == 1 and b"HTTP/1.1 101" in answer
        assert received == ["one", "two"]
        nursery.cancel_scope.cancel()


async def _get(port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(
            f"GET {path} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n".encode()
        )
        return await _read_all(stream)
