"""HTTP and WebSocket on one port: h11 reads each request, trio-websocket serves ``/ws``.

trio-websocket only speaks WebSocket, and rejects plain HTTP. So each TCP connection is read by
h11 first: a WebSocket upgrade to ``/ws`` is handed, with the bytes already read, to a
``trio_websocket.WebSocketConnection``; any other request goes to the HTTP API and the connection
is kept alive for the next one. See ADR 0007.
"""

from __future__ import annotations

import functools
import json
import logging
import struct
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import attrs
import h11
import trio
import trio_websocket
from wsproto import ConnectionType, WSConnection
from wsproto.utilities import RemoteProtocolError

from ...ports import (
    ConnectionClosed,
    ConnectionHandler,
    HttpApi,
    HttpRequest,
    HttpResponse,
    SendOutcome,
)

log = logging.getLogger("tidings.web")

MAX_HEAD_BYTES = 16_384
CLOSE_TIMEOUT = 1.0
WRITE_TIMEOUT = 10.0
"""Seconds a write to a client may take. A write is never cancelled half-way (that would leave
half a frame on the wire); one that stalls this long means the client stopped reading, and the
connection is dropped."""


class _FrameCache:
    """Recently framed texts, bounded by their total size (oldest dropped first)."""

    def __init__(self, max_bytes: int) -> None:
        self._frames: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes

    def get(self, text: str) -> bytes:
        framed = self._frames.get(text)
        if framed is None:
            framed = _frame(text)
            if len(framed) <= self._max_bytes // 16:
                self._frames[text] = framed
                self._bytes += len(framed) + len(text)
                while self._bytes > self._max_bytes:
                    old_text, old = self._frames.popitem(last=False)
                    self._bytes -= len(old) + len(old_text)
        return framed


_FRAMES = _FrameCache(max_bytes=1024 * 1024)


def text_frame(text: str) -> bytes:
    """``text`` as one unmasked, final WebSocket text frame (RFC 6455 §5.2).

    A server's frames carry no mask and the gateway negotiates no extension, so a frame's bytes
    are the same for every connection: a broadcast to a thousand clients is framed once (a cache
    of 1 MiB holds recent frames), not a thousand times by each connection's wsproto. The
    adapter's tests check the bytes against wsproto's own.
    """
    return _FRAMES.get(text)


def _frame(text: str) -> bytes:
    payload = text.encode()
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 65_536:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + payload


@attrs.frozen
class _Upgrade:
    """A request to upgrade to WebSocket: the bytes read so far, and the token it carried."""

    raw: bytes
    token: str | None


class _HandshakeDone:
    """Stands in for wsproto's handshake once the connection is open: wsproto only asks it
    for pending events then, and it has none; the real one keeps an h11 connection alive."""

    def events(self) -> Iterator[Any]:
        return iter(())


_HANDSHAKE_DONE = _HandshakeDone()


class WebSocketClient:
    """A trio-websocket connection seen as a ``ClientConnection``."""

    def __init__(
        self,
        ws: trio_websocket.WebSocketConnection,
        token: str | None,
        remote: str,
        stream: trio.SocketStream | None = None,
    ):
        self._ws = ws
        self._token = token
        self._remote = remote
        self._stream = stream
        # The plain socket under trio's, for writes that need no waiting; None disables them.
        self._socket = getattr(stream.socket, "_sock", None) if stream is not None else None
        self._held = b""
        """The tail of a partial non-blocking write: whatever is written next goes after it."""

    def take_token(self) -> str | None:
        token, self._token = self._token, None
        return token

    @property
    def remote(self) -> str:
        return self._remote

    async def receive(self) -> str | bytes:
        try:
            return await self._ws.get_message()
        except trio_websocket.ConnectionClosed as exc:
            reason = exc.reason
            if reason is None:
                raise ConnectionClosed(1006, "connection lost") from None
            raise ConnectionClosed(reason.code, reason.reason or "") from None

    async def send_many(self, frames: Sequence[str]) -> None:
        """Write every frame with one ``send_all``, under the connection's own lock.

        trio-websocket writes one frame per call; a burst to a client is one write here, and
        each frame's bytes are shared by every connection it goes to (``text_frame``).
        """
        ws = self._ws
        closed = ws._close_reason
        if closed is not None:
            raise ConnectionClosed(closed.code, closed.reason or "")
        data = b"".join([text_frame(frame) for frame in frames])
        with trio.CancelScope(shield=True) as write:
            write.deadline = trio.current_time() + WRITE_TIMEOUT
            async with ws._stream_lock:
                data = self._take_held() + data
                try:
                    await ws._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    raise ConnectionClosed(1006, "connection lost") from None
        if write.cancelled_caught:
            await trio.aclose_forcefully(ws._stream)
            raise ConnectionClosed(1006, f"write stalled for {WRITE_TIMEOUT:g}s; dropped")

    def send_nowait(self, frames: Sequence[str]) -> SendOutcome:
        """One non-blocking ``send`` of the frames, when nothing else is being written.

        Safe beside trio-websocket: every write of its own holds the connection's stream lock
        across its awaits, so a free lock means no write is half done. What the kernel does not
        take is held and goes out first with the next ``send_many``.
        """
        ws = self._ws
        socket = self._socket
        if socket is None or self._held or ws._close_reason is not None:
            return SendOutcome.BLOCKED
        if ws._stream_lock.locked():
            return SendOutcome.BLOCKED
        data = b"".join([text_frame(frame) for frame in frames])
        try:
            written = socket.send(data)
        except OSError:  # would block, or the connection broke: the writer sorts it out
            return SendOutcome.BLOCKED
        if written == len(data):
            return SendOutcome.SENT
        assert self._stream is not None
        self._held = data[written:]
        # Until the tail is out, trio-websocket's own writes (a pong, a close) must follow it,
        # not land inside the frame: they go through a stream that sends the tail first.
        ws._stream = _TailFirst(self._stream, self)
        return SendOutcome.PARTIAL

    def _take_held(self) -> bytes:
        """The held tail, to be written next (under the stream lock); the plain stream again."""
        held, self._held = self._held, b""
        if held and self._stream is not None:
            self._ws._stream = self._stream
        return held

    async def close(self, code: int, reason: str = "") -> None:
        """Say goodbye with ``code`` if the client can still hear it, then drop the socket."""
        with trio.move_on_after(CLOSE_TIMEOUT) as closing:
            await self._ws.aclose(code, reason or None)
        if closing.cancelled_caught or not self._ws.closed:
            await trio.aclose_forcefully(self._ws._stream)


class _TailFirst(trio.abc.Stream):
    """A connection's stream while a partial write's tail is held: the next write sends it first.

    trio-websocket writes under its stream lock, as ``send_many`` does, and each writer takes
    the tail inside that lock, so the bytes go out in the order they were meant to.
    """

    def __init__(self, stream: trio.SocketStream, client: WebSocketClient) -> None:
        self._stream = stream
        self._client = client

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self._stream.send_all(self._client._take_held() + bytes(data))

    async def wait_send_all_might_not_block(self) -> None:
        await self._stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return bytes(await self._stream.receive_some(max_bytes))

    async def aclose(self) -> None:
        await self._stream.aclose()


def _parse_target(target: bytes) -> tuple[str, dict[str, str]]:
    parts = urlsplit(target.decode("latin-1"))
    return parts.path or "/", dict(parse_qsl(parts.query, keep_blank_values=True))


def _response_headers(response: HttpResponse, keep_alive: bool) -> list[tuple[str, str]]:
    headers = [
        ("content-type", response.content_type),
        ("content-length", str(len(response.body))),
        ("server", "tidings"),
        ("x-content-type-options", "nosniff"),
    ]
    headers += list(response.headers.items())
    if not keep_alive:
        headers.append(("connection", "close"))
    return headers


class WebServer:
    """The gateway's listener (implements ``Transport``); see the module doc."""

    def __init__(
        self,
        host: str,
        port: int,
        http: HttpApi,
        *,
        max_frame_bytes: int = 65_536,
        max_body_bytes: int = 1_048_576,
        handshake_timeout: float = 10.0,
        keep_alive_timeout: float = 30.0,
    ) -> None:
        self.host = host
        self.port = port
        self._http = http
        self._max_message = max_frame_bytes * 4
        self._max_body = max_body_bytes
        self._handshake_timeout = handshake_timeout
        self._keep_alive_timeout = keep_alive_timeout
        self._accepting = trio.CancelScope()
        self._connections: trio.Nursery | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def serve(
        self,
        handler: ConnectionHandler,
        *,
        task_status: trio.TaskStatus[WebServer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            self._connections = nursery
            task_status.started(self)

            # A partial, not a closure: one coroutine frame less held by every connection.
            on_stream = functools.partial(self._on_stream, handler=handler)
            with self._accepting:
                await trio.serve_listeners(on_stream, listeners, handler_nursery=nursery)
            for listener in listeners:
                await listener.aclose()

    def stop_accepting(self) -> None:
        """Close the listening socket; connections already open go on until they end."""
        self._accepting.cancel()

    async def _on_stream(self, stream: trio.SocketStream, handler: ConnectionHandler) -> None:
        """One TCP connection: HTTP requests until one upgrades to WebSocket, then that client's
        handler for as long as it lives."""
        try:
            client = await self._accept(stream)
            if client is None:
                return
            try:
                await handler(client)
            except Exception:
                # One connection's failure must never take the listener (and every other
                # client) down with it: log it, and close this connection as an internal error.
                log.exception("connection from %s failed", client.remote)
                await client.close(1011, "internal error")
            finally:
                await client.close(1001)
        finally:
            await trio.aclose_forcefully(stream)

    async def _accept(self, stream: trio.SocketStream) -> WebSocketClient | None:
        """Serve a new connection's HTTP requests until one upgrades to WebSocket: the client,
        handshake done; None when the connection ended first. (A WebSocket lives long: what it
        needed while it was HTTP goes with this call's frame.)"""
        try:
            host, port = stream.socket.getpeername()[:2]
            remote = f"{host}:{port}"
        except OSError:
            return None
        connection = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        try:
            upgrade = await self._serve_connection(stream, connection, remote)
            if upgrade is None:
                return None
            ws = await self._open_websocket(stream, upgrade.raw)
            return WebSocketClient(ws, upgrade.token, remote, stream)
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            h11.ProtocolError,
            RemoteProtocolError,
        ) as exc:
            log.debug("connection from %s ended: %s", remote, exc)
            return None

    async def _serve_connection(
        self, stream: trio.SocketStream, connection: h11.Connection, remote: str
    ) -> _Upgrade | None:
        """Requests one after another (keep-alive) until one asks to upgrade (returned) or the
        connection closes (None)."""
        timeout = self._handshake_timeout
        while True:
            raw = bytearray()
            request = None
            with trio.move_on_after(timeout):
                request = await self._read_head(stream, connection, raw)
            if request is None:
                return None  # closed, malformed (answered), or too slow to send a request
            path, query = _parse_target(request.target)
            headers = {
                name.decode().lower(): value.decode("latin-1") for name, value in request.headers
            }
            if headers.get("upgrade", "").lower() == "websocket":
                if path != "/ws":
                    await self._send_error(stream, connection, 404, f"no WebSocket at {path}")
                    return None
                return _Upgrade(bytes(raw), query.get("token"))
            body: bytes | None = b""
            with trio.move_on_after(self._handshake_timeout) as body_scope:
                try:
                    body = await self._read_body(stream, connection, headers)
                except h11.RemoteProtocolError as exc:
                    await self._send_error(stream, connection, 400, f"bad request body: {exc}")
                    return None
            if body_scope.cancelled_caught:
                return None
            if body is None:
                await self._send_error(
                    stream, connection, 413, f"request body over {self._max_body} bytes"
                )
                return None
            try:
                response = await self._http.handle(
                    HttpRequest(request.method.decode(), path, query, headers, body)
                )
            except Exception:
                log.exception("%s %s from %s failed", request.method.decode(), path, remote)
                await self._send_error(stream, connection, 500, "internal error")
                return None
            await self._send(stream, connection, response, head_only=request.method == b"HEAD")
            if connection.our_state is not h11.DONE or connection.their_state is not h11.DONE:
                return None
            connection.start_next_cycle()
            timeout = self._keep_alive_timeout

    async def _read_head(
        self, stream: trio.SocketStream, connection: h11.Connection, raw: bytearray
    ) -> h11.Request | None:
        while True:
            try:
                event = connection.next_event()
            except h11.RemoteProtocolError as exc:
                await self._send_error(stream, connection, exc.error_status_hint, str(exc))
                return None
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65_536)
                raw += data
                connection.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                size = len(event.target) + sum(
                    len(name) + len(value) + 4 for name, value in event.headers
                )
                if size > MAX_HEAD_BYTES:  # h11 only bounds a head still being read
                    await self._send_error(
                        stream, connection, 431, f"request head over {MAX_HEAD_BYTES} bytes"
                    )
                    return None
                return event
            return None  # connection closed or paused

    async def _read_body(
        self, stream: trio.SocketStream, connection: h11.Connection, headers: dict[str, str]
    ) -> bytes | None:
        length = headers.get("content-length")
        if length is not None and length.isdigit() and int(length) > self._max_body:
            return None
        body = bytearray()
        while True:
            event = connection.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65_536)
                if not data:
                    raise trio.BrokenResourceError("client closed mid-body")
                connection.receive_data(data)
                continue
            if isinstance(event, h11.Data):
                body += event.data
                if len(body) > self._max_body:
                    return None
                continue
            if isinstance(event, h11.EndOfMessage):
                return bytes(body)
            raise trio.BrokenResourceError(f"unexpected {event!r} in a request body")

    async def _send(
        self,
        stream: trio.SocketStream,
        connection: h11.Connection,
        response: HttpResponse,
        *,
        head_only: bool = False,
    ) -> None:
        """Write a response; for HEAD, the GET's headers (its length included) and no body."""
        keep_alive = connection.their_state is not h11.MUST_CLOSE
        head = h11.Response(
            status_code=response.status, headers=_response_headers(response, keep_alive)
        )
        data = connection.send(head) or b""
        if not head_only:
            data += connection.send(h11.Data(data=response.body)) or b""
        data += connection.send(h11.EndOfMessage()) or b""
        await stream.send_all(data)

    async def _send_error(
        self, stream: trio.SocketStream, connection: h11.Connection, status: int, message: str
    ) -> None:
        body = json.dumps({"error": message}).encode()
        if connection.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        try:
            response = HttpResponse(status, body, "application/json", {"connection": "close"})
            await self._send(stream, connection, response)
        except h11.LocalProtocolError:
            pass

    async def _open_websocket(
        self, stream: trio.SocketStream, request: bytes
    ) -> trio_websocket.WebSocketConnection:
        """Complete the upgrade with trio-websocket, given the request bytes h11 already read.

        This is ``trio_websocket.wrap_server_stream`` plus ``accept``, but wsproto is fed the
        request before the reader starts (no wrapper around the stream replaying it, on every
        read for the connection's life), and the reader task lives in the listener's nursery (a
        nursery per connection is memory an idle connection does not need).
        """
        assert self._connections is not None
        ws = trio_websocket.WebSocketConnection(
            stream, WSConnection(ConnectionType.SERVER), max_message_size=self._max_message
        )
        try:
            ws._wsproto.receive_data(request)
        except RemoteProtocolError as exc:  # no key, wrong version ...: wsproto's own refusal
            if exc.event_hint is not None:
                await stream.send_all(ws._wsproto.send(exc.event_hint))
            raise
        self._connections.start_soon(ws._reader_task)
        await (await ws._get_request()).accept()
        ws._wsproto.handshake = _HANDSHAKE_DONE  # type: ignore[assignment]  # see _HandshakeDone
        return ws
