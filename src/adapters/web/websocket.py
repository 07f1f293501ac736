"""One server-side WebSocket connection, served on wsproto's low-level ``Connection`` (ADR 0017).

wsproto parses and validates every byte a client sends (masking, reserved bits, opcodes, control
frame rules, UTF-8, close codes); this module decides what the gateway does about each event and
owns the socket. There is no reader task: the gateway's own read loop calls ``receive``, which
reads the socket, answers pings and the client's close, and returns the next whole message. So a
misbehaving client can only ever fail its own ``receive`` call, never a task the listener owns.

Writes are serialised by a lock made on first need (an idle connection holds none) and bounded
in time: a write is never cancelled half-way (that would leave half a frame on the wire), and one
that stalls for ``WRITE_TIMEOUT`` means the client stopped reading, so the socket is dropped.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence

import trio
from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    TextMessage,
)
from wsproto.utilities import generate_accept_token

from ...domain.disconnects import DISCONNECTS, close_reason
from ...ports import ConnectionClosed, FrameTooLarge, SendOutcome
from .framing import text_frame
from .http1 import BadRequest
from .socket_writer import SocketWriter

RECEIVE_BYTES = 65_536
WRITE_TIMEOUT = 10.0
"""Seconds a write to a client may take before the client counts as gone."""
MAX_PARTS = 1_024
"""Fragments (and partial reads) one message may come in."""
CLOSE_TIMEOUT = 1.0
"""Seconds the closing handshake may take, each way, before the socket is simply dropped."""

# The fan-out path reads these once per recipient: an Enum member looked up on its class costs
# about 75 ns on CPython 3.11, as much as the rest of a check, so the hot path uses module names.
_OPEN = ConnectionState.OPEN
_BLOCKED = SendOutcome.BLOCKED


def accept_headers(
    method: str, http_version: bytes, headers: dict[str, str]
) -> list[tuple[str, str]]:
    """The headers of the ``101 Switching Protocols`` answer to a WebSocket upgrade request.

    ``headers`` has lower-case names. Raises ``BadRequest`` (an HTTP refusal) naming what is
    wrong with the request; the gateway offers no subprotocol and no extension, so a client
    asking for one gets a plain WebSocket, as RFC 6455 allows.
    """
    if method != "GET":
        raise BadRequest(405, f"a WebSocket upgrade is a GET, not {method}", {"allow": "GET"})
    if http_version != b"1.1":
        raise BadRequest(400, "a WebSocket upgrade needs HTTP/1.1")
    connection = {token.strip().lower() for token in headers.get("connection", "").split(",")}
    if "upgrade" not in connection:
        raise BadRequest(400, "a WebSocket upgrade needs 'Connection: Upgrade'")
    version = headers.get("sec-websocket-version", "").strip()
    if not version:
        raise BadRequest(400, "a WebSocket upgrade needs Sec-WebSocket-Version: 13")
    if version != "13":
        raise BadRequest(
            426,
            f"unsupported Sec-WebSocket-Version {version!r}; this server speaks 13",
            {"sec-websocket-version": "13"},
        )
    key = headers.get("sec-websocket-key", "").strip()
    try:
        nonce = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        nonce = b""
    if len(nonce) != 16:
        raise BadRequest(400, "Sec-WebSocket-Key must be 16 bytes in base64")
    return [
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("sec-websocket-accept", generate_accept_token(key.encode("ascii")).decode("ascii")),
    ]


_NO_QUERY: Mapping[str, str] = {}


class WebSocketConnection(SocketWriter):
    """A client's WebSocket (implements ``ClientConnection``); see the module doc."""

    __slots__ = (
        "_failed",
        "_max_message",
        "_parts",
        "_remote",
        "_size",
        "_token",
        "_ws",
        "path",
        "query",
    )

    def __init__(
        self,
        stream: trio.SocketStream,
        *,
        token: str | None,
        remote: str,
        max_message_bytes: int,
        received: bytes = b"",
        path: str = "/ws",
        query: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(stream)
        self.path = path
        self.query: Mapping[str, str] = query or _NO_QUERY
        self._token = token
        self._remote = remote
        self._max_message = max_message_bytes
        self._ws = Connection(ConnectionType.SERVER)
        if received:
            self._ws.receive_data(received)  # frames the client sent right behind its upgrade
        self._parts: list[str | bytes] = []
        self._size = 0
        self._failed = False
        """The client broke the protocol: nothing more it sends is parsed."""

    def take_token(self) -> str | None:
        token, self._token = self._token, None
        return token

    @property
    def remote(self) -> str:
        return self._remote

    # -- Reading ---------------------------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """The next whole message; pings and the client's close are answered on the way.

        Raises ``ConnectionClosed`` when the client closed, broke the protocol (the close code
        then says how, 1002 or 1007) or vanished (1006), and ``FrameTooLarge`` for a message
        over the hard limit (the caller closes with 1009).
        """
        while True:
            for event in self._ws.events():
                message = await self._on_event(event)
                if message is not None:
                    return message
            if self._ended or self._ws.state is ConnectionState.CLOSED:
                raise ConnectionClosed(1006, "connection lost")
            self._ws.receive_data(await self._read() or None)

    async def _read(self) -> bytes:
        try:
            return await self._stream.receive_some(RECEIVE_BYTES)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""

    async def _on_event(self, event: Event) -> str | bytes | None:
        if isinstance(event, TextMessage | BytesMessage):
            data = event.data
            return self._collect(
                bytes(data) if isinstance(data, bytearray) else data, event.message_finished
            )
        if isinstance(event, Ping):
            if self._ws.state is ConnectionState.OPEN:  # never once either side began closing
                await self._send(self._ws.send(event.response()), WRITE_TIMEOUT)
            return None
        if isinstance(event, CloseConnection):
            await self._closed_by_client(event)
        return None  # a Pong: nothing to do

    def _collect(self, data: str | bytes, finished: bool) -> str | bytes | None:
        """Add a message part; the whole message once it is finished.

        Both bounds are hard: the message's size in bytes (text arrives decoded: ASCII, the
        common case, is counted without encoding) and the number of parts it comes in, so a
        client cannot make a connection hold a million one-byte fragments.
        """
        if isinstance(data, bytes) or data.isascii():
            self._size += len(data)
        else:
            self._size += len(data.encode("utf-8", "surrogatepass"))
        if self._size > self._max_message or len(self._parts) >= MAX_PARTS:
            size, self._parts, self._size = self._size, [], 0
            raise FrameTooLarge(
                f"message of {size}+ bytes or {MAX_PARTS}+ fragments is over the hard limit "
                f"of {self._max_message} bytes"
            )
        if not finished:
            self._parts.append(data)
            return None
        if not self._parts:
            self._size = 0
            return data
        parts, self._parts, self._size = self._parts, [], 0
        parts.append(data)
        if isinstance(data, str):
            return "".join(part for part in parts if isinstance(part, str))
        return b"".join(part for part in parts if isinstance(part, bytes))

    async def _closed_by_client(self, event: CloseConnection) -> None:
        """The client closed, broke the protocol, or vanished: answer as RFC 6455 asks, then
        raise ``ConnectionClosed``."""
        state = self._ws.state
        code, reason = event.code, event.reason or ""
        if state is ConnectionState.REMOTE_CLOSING:  # the client's close: echo it
            await self._send_quietly(self._ws.send(event.response()))
        elif state is ConnectionState.OPEN:  # a protocol error: wsproto names the close code
            self._failed = True
            if code in DISCONNECTS:
                reason = close_reason(code, reason)
            await self._send_quietly(self._ws.send(CloseConnection(code, reason[:120])))
        raise ConnectionClosed(code, reason)

    # -- Writing ---------------------------------------------------------------------------------

    async def send_many(self, frames: Sequence[str]) -> None:
        """Write every frame with one ``send_all`` (each frame's bytes shared by every connection
        it goes to), after any tail a partial ``send_nowait`` left."""
        if self._ended or self._ws.state is not ConnectionState.OPEN:
            raise ConnectionClosed(1006, "connection closing")
        await self._send(b"".join([text_frame(frame) for frame in frames]), WRITE_TIMEOUT)

    def send_nowait(self, frames: Sequence[str]) -> SendOutcome:
        """One non-blocking write of the frames, when nothing else is being written (what the
        kernel does not take is held and goes out first with the next write)."""
        if self._held or self._ended or self._ws.state is not _OPEN:
            return _BLOCKED
        if len(frames) == 1:
            return self._write_nowait(text_frame(frames[0]))
        return self._write_nowait(b"".join([text_frame(frame) for frame in frames]))

    async def _send_quietly(self, data: bytes) -> None:
        try:
            await self._send(data, CLOSE_TIMEOUT)
        except ConnectionClosed:
            pass

    # -- Closing ---------------------------------------------------------------------------------

    async def close(self, code: int, reason: str = "") -> None:
        """Say goodbye with ``code`` if the client can still hear it, wait briefly for its
        answer, then drop the socket. Safe to call more than once, and under cancellation."""
        if self._ended:
            return
        try:
            if self._ws.state is ConnectionState.OPEN:
                await self._send_quietly(self._ws.send(CloseConnection(code, reason[:120] or None)))
            if self._ws.state is ConnectionState.LOCAL_CLOSING and not self._ended:
                with trio.move_on_after(CLOSE_TIMEOUT):
                    await self._await_close()
        finally:
            await self._end()

    async def _await_close(self) -> None:
        """Read until the client answers our close (or goes); everything else is discarded."""
        while not self._ended and self._ws.state is ConnectionState.LOCAL_CLOSING:
            data = await self._read()
            if not data:
                return
            if self._failed:
                continue  # the parser gave up on this client: just wait for it to go
            self._ws.receive_data(data)
            for event in self._ws.events():
                if isinstance(event, CloseConnection):
                    return

    async def _end(self) -> None:
        self._parts = []
        await super()._end()
