"""The WebSocket + HTTP listener on its own: one port, and one failure never spreads."""

from __future__ import annotations

import errno
import json

import trio
import trio_websocket

from tidings.adapters.web import WebServer
from tidings.ports import ClientConnection, HttpRequest, HttpResponse, SendOutcome


class BrokenApi:
    """An HTTP API that fails on /boom and answers everything else."""

    async def handle(self, request: HttpRequest) -> HttpResponse:
        if request.path == "/boom":
            raise RuntimeError("bug in a handler")
        body = json.dumps({"path": request.path, "query": request.query}).encode()
        return HttpResponse(200, body)


async def _handler(connection: ClientConnection) -> None:
    frame = await connection.receive()
    if frame == "boom":
        raise RuntimeError("bug in a connection handler")
    token = connection.take_token()
    assert connection.take_token() is None  # handed over once
    await connection.send_many([f"echo:{frame}", f"token:{token}"])
    await connection.receive()


async def _http_get(port: int, path: str) -> bytes:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nhost: x\r\n\r\n".encode())
        data = b""
        while b"\r\n\r\n" not in data:
            data += await stream.receive_some(4096)
        return data


async def test_http_and_websocket_share_the_port_and_failures_stay_local() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(WebServer("127.0.0.1", 0, BrokenApi()).serve, _handler)
        port = server.port
        assert b"200" in (await _http_get(port, "/x?a=1")).split(b"\r\n")[0]
        assert b" 500 " in (await _http_get(port, "/boom")).split(b"\r\n")[0]
        url = f"ws://127.0.0.1:{port}/ws?token=t0k"
        async with trio_websocket.open_websocket_url(url) as ws:
            await ws.send_message("boom")
            try:
                await ws.get_message()
            except trio_websocket.ConnectionClosed as closed:
                assert closed.reason is not None and closed.reason.code == 1011
        async with trio_websocket.open_websocket_url(url) as ws:  # the listener survived
            await ws.send_message("hi")
            assert await ws.get_message() == "echo:hi"
            assert await ws.get_message() == "token:t0k"
        assert b"200" in (await _http_get(port, "/still-here")).split(b"\r\n")[0]
        nursery.cancel_scope.cancel()


async def test_a_websocket_upgrade_elsewhere_than_ws_is_404() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(WebServer("127.0.0.1", 0, BrokenApi()).serve, _handler)
        try:
            async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{server.port}/other"):
                raise AssertionError("the upgrade should have been refused")
        except trio_websocket.HandshakeError as refused:
            assert "404" in repr(refused)
        nursery.cancel_scope.cancel()


async def test_a_malformed_upgrade_gets_wsprotos_refusal_and_the_listener_goes_on() -> None:
    async with trio.open_nursery() as nursery:
        server = await nursery.start(WebServer("127.0.0.1", 0, BrokenApi()).serve, _handler)
        for missing, status in [("sec-websocket-key", b"400"), ("sec-websocket-version", b"400")]:
            headers = {
                "host": "x",
                "upgrade": "websocket",
                "connection": "Upgrade",
                "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
                "sec-websocket-version": "13",
            }
            del headers[missing]
            head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
            stream = await trio.open_tcp_stream("127.0.0.1", server.port)
            async with stream:
                await stream.send_all(f"GET /ws HTTP/1.1\r\n{head}\r\n".encode())
                answer = b""
                with trio.fail_after(5):
                    while chunk := await stream.receive_some(4096):
                        answer += chunk
            assert answer.split(b"\r\n")[0].split(b" ")[1] == status, (missing, answer)
        async with trio_websocket.open_websocket_url(f"ws://127.0.0.1:{server.port}/ws") as ws:
            await ws.send_message("hi")
            assert await ws.get_message() == "echo:hi"
        nursery.cancel_scope.cancel()


async def test_a_pong_waits_for_the_tail_of_a_partial_write() -> None:
    """A write-through send the socket takes only in part holds the rest; a pong that
    trio-websocket sends before the session's writer runs must follow that rest, not split the
    frame."""
    big = "x" * (16 * 1024 * 1024)  # more than a loopback socket buffers
    outcomes: list[SendOutcome] = []

    async def handler(connection: ClientConnection) -> None:
        assert await connection.receive() == "go"
        outcomes.append(connection.send_nowait([big]))
        assert await connection.receive() == "next"  # meanwhile the reader answers the ping
        await connection.receive()

    async with trio.open_nursery() as nursery:
        server = await nursery.start(WebServer("127.0.0.1", 0, BrokenApi()).serve, handler)
        url = f"ws://127.0.0.1:{server.port}/ws"
        async with trio_websocket.open_websocket_url(url, max_message_size=2 * len(big)) as ws:
            with trio.fail_after(20):
                await ws.send_message("go")
                await ws.send_message("next")
                await ws.ping(b"after-the-frame")  # answered only once the frame is whole
                assert await ws.get_message() == big
        assert outcomes == [SendOutcome.PARTIAL]
        nursery.cancel_scope.cancel()


async def _body_of(port: int) -> bytes:
    """The body of the answer to ``GET /`` on a connection the server closes after it."""
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
        data = b""
        while chunk := await stream.receive_some(4096):
            data += chunk
    return data.split(b"\r\n\r\n", 1)[1]


class PathApi:
    """Answers every request with the name it was given: which listener took the connection."""

    def __init__(self, name: str) -> None:
        self.name = name

    async def handle(self, request: HttpRequest) -> HttpResponse:
        return HttpResponse(200, self.name.encode())


async def test_listeners_with_reuse_port_share_one_port_and_both_take_connections() -> None:
    """``reuse_port`` (``serve --workers``, ADR 0032): a second listener on a port in use binds
    beside the first, and the kernel gives new connections to both; without the option the
    second cannot bind."""
    async with trio.open_nursery() as nursery:
        first = await nursery.start(
            WebServer("127.0.0.1", 0, PathApi("a"), reuse_port=True).serve, _handler
        )
        port = first.port
        await nursery.start(
            WebServer("127.0.0.1", port, PathApi("b"), reuse_port=True).serve, _handler
        )
        answered: set[bytes] = set()
        for _ in range(64):  # the kernel picks by a hash of the client's port: both within 64
            answered.add(await _body_of(port))
            if len(answered) == 2:
                break
        assert answered == {b"a", b"b"}, answered
        try:
            await WebServer("127.0.0.1", port, PathApi("c")).serve(_handler)
        except OSError as exc:
            assert exc.errno == errno.EADDRINUSE
        else:
            raise AssertionError("a listener without reuse_port bound a port in use")
        nursery.cancel_scope.cancel()
