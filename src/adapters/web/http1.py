"""HTTP/1.1 on one TCP connection, read and written with h11: requests in, responses out.

h11 parses every byte of a request head and body; this module adds what h11 leaves to the
server: bounds on the head and the body, the request-target read as a path (``//host/x`` is the
path ``//host/x``, never a host), a request carrying both ``Content-Length`` and
``Transfer-Encoding`` refused and the connection closed (RFC 9112 §6.1), and every refusal a
JSON ``{"error": ...}`` with the status that says what was wrong.
"""

from __future__ import annotations

import json
from urllib.parse import parse_qsl, urlsplit

import attrs
import h11
import trio

from ...ports import HttpRequest, HttpResponse

MAX_HEAD_BYTES = 16_384
LINGER_BYTES = 1_048_576
"""What a refused client may still send before its connection is closed anyway."""
RECEIVE_BYTES = 65_536
NO_BODY = frozenset({204, 304})
"""Statuses whose responses carry no body and no Content-Length (RFC 9110 §8.6)."""


class BadRequest(Exception):
    """A request the server answers with an error and then closes the connection."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.message = message
        self.headers = headers or {}
        super().__init__(f"{status} {message}")


@attrs.frozen
class RequestHead:
    """A request's head, with header names in lower case (the last of repeated ones wins)."""

    method: str
    target: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    http_version: bytes
    forwarded_for: tuple[str, ...] = ()
    """The ``X-Forwarded-For`` entries of every such header line, in order (split at commas)."""

    @property
    def wants_websocket(self) -> bool:
        return self.headers.get("upgrade", "").strip().lower() == "websocket"

    def request(self, body: bytes = b"") -> HttpRequest:
        return HttpRequest(self.method, self.path, self.query, self.headers, body)


def parse_target(target: str) -> tuple[str, dict[str, str]]:
    """A request-target's path and query (RFC 9112 §3.2).

    The origin form (``/path?query``) is split at the first ``?`` and nothing else: a path that
    starts with ``//`` stays a path. The absolute form (``http://host/path``) gives its path.
    Anything else raises ``BadRequest``.
    """
    if target.startswith("/"):
        path, _, query = target.partition("?")
    elif target.lower().startswith(("http://", "https://")):
        parts = urlsplit(target)
        path, query = parts.path or "/", parts.query
    else:
        raise BadRequest(400, f"request target {target[:60]!r} is not a path")
    return path, dict(parse_qsl(query, keep_blank_values=True))


def _response_headers(response: HttpResponse, keep_alive: bool) -> list[tuple[str, str]]:
    headers = [("content-type", response.content_type)]
    if response.status not in NO_BODY:
        headers.append(("content-length", str(len(response.body))))
    headers += [("server", "tidings"), ("x-content-type-options", "nosniff")]
    headers += list(response.headers.items())
    if not keep_alive and "connection" not in response.headers:
        headers.append(("connection", "close"))
    return headers


def error_response(
    status: int, message: str, headers: dict[str, str] | None = None
) -> HttpResponse:
    body = json.dumps({"error": message}).encode()
    return HttpResponse(status, body, "application/json", headers or {})


class HttpConnection:
    """One client's HTTP/1.1 conversation: heads, bodies and responses, in turn."""

    def __init__(self, stream: trio.SocketStream, *, max_body_bytes: int) -> None:
        self._stream = stream
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._max_body = max_body_bytes

    @property
    def machine(self) -> h11.Connection:
        """The h11 state machine, for a response written in parts (``sse``)."""
        return self._h11

    async def next_head(self) -> RequestHead | None:
        """The next request's head; None once the client closed (or paused) the connection.

        Raises ``BadRequest`` for a malformed head, one over ``MAX_HEAD_BYTES``, or framing
        the server refuses.
        """
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadRequest(exc.error_status_hint, f"bad request: {exc}") from None
            if event is h11.NEED_DATA:
                data = await self._receive()
                self._h11.receive_data(data)
                continue
            if isinstance(event, h11.Request):
                return self._head(event)
            return None

    def _head(self, request: h11.Request) -> RequestHead:
        size = len(request.target) + sum(
            len(name) + len(value) + 4 for name, value in request.headers
        )
        if size > MAX_HEAD_BYTES:  # h11 only bounds a head still being read
            raise BadRequest(431, f"request head over {MAX_HEAD_BYTES} bytes")
        names = [name.lower() for name, _ in request.headers]
        if b"transfer-encoding" in names and b"content-length" in names:
            raise BadRequest(
                400, "a request may not carry both Content-Length and Transfer-Encoding"
            )
        target = request.target.decode("latin-1")
        path, query = parse_target(target)
        headers = {
            name.decode("latin-1").lower(): value.decode("latin-1")
            for name, value in request.headers
        }
        forwarded_for = tuple(
            entry.strip()
            for name, value in request.headers
            if name.lower() == b"x-forwarded-for"
            for entry in value.decode("latin-1").split(",")
        )
        return RequestHead(
            request.method.decode("latin-1"),
            target,
            path,
            query,
            headers,
            request.http_version,
            forwarded_for,
        )

    async def read_body(self, head: RequestHead) -> bytes:
        """The request's body; ``BadRequest`` (413) once it is over the limit."""
        length = head.headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > self._max_body:
            raise BadRequest(413, f"request body over {self._max_body} bytes")
        body = bytearray()
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError as exc:
                raise BadRequest(400, f"bad request body: {exc}") from None
            if event is h11.NEED_DATA:
                data = await self._receive()
                if not data:
                    raise trio.BrokenResourceError("client closed mid-body")
                self._h11.receive_data(data)
            elif isinstance(event, h11.Data):
                body += event.data
                if len(body) > self._max_body:
                    raise BadRequest(413, f"request body over {self._max_body} bytes")
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:
                raise trio.BrokenResourceError(f"unexpected {type(event).__name__} in a body")

    async def respond(self, response: HttpResponse, *, head_only: bool = False) -> bool:
        """Write a response (for HEAD, the GET's headers and no body); whether the connection
        may carry another request."""
        keep_alive = self._h11.their_state is not h11.MUST_CLOSE and "connection" not in {
            name.lower() for name in response.headers
        }
        head = h11.Response(
            status_code=response.status, headers=_response_headers(response, keep_alive)
        )
        data = self._h11.send(head) or b""
        if not head_only and response.body and response.status not in NO_BODY:
            data += self._h11.send(h11.Data(data=response.body)) or b""
        data += self._h11.send(h11.EndOfMessage()) or b""
        await self._stream.send_all(data)
        if self._h11.our_state is h11.DONE and self._h11.their_state is h11.DONE:
            self._h11.start_next_cycle()
            return True
        return False

    async def refuse(
        self, status: int, message: str, headers: dict[str, str] | None = None
    ) -> None:
        """Answer with an error and ``Connection: close``, if a response can still be sent."""
        if self._h11.our_state not in (h11.IDLE, h11.SEND_RESPONSE):
            return
        response = error_response(status, message, {**(headers or {}), "connection": "close"})
        try:
            await self.respond(response)
        except h11.LocalProtocolError:
            pass

    async def switch_protocols(self, headers: list[tuple[str, str]]) -> bytes:
        """Answer 101 to the upgrade request just read; the bytes the client already sent after
        it, which belong to the new protocol."""
        while True:  # the upgrade request's end (a GET has no body)
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                self._h11.receive_data(await self._receive())
            elif event is h11.PAUSED or isinstance(event, h11.EndOfMessage):
                if event is h11.PAUSED:
                    break
            elif isinstance(event, h11.ConnectionClosed):
                raise trio.BrokenResourceError("client closed before the upgrade completed")
            else:
                raise BadRequest(400, "a WebSocket upgrade request carries no body")
        data = self._h11.send(h11.InformationalResponse(status_code=101, headers=headers))
        await self._stream.send_all(data or b"")
        received, _ = self._h11.trailing_data
        return received

    async def _receive(self) -> bytes:
        return await self._stream.receive_some(RECEIVE_BYTES)


async def linger(stream: trio.SocketStream) -> None:
    """After a refusal: say we are done writing, then read (and drop) what the client still
    sends until it closes, at most ``LINGER_BYTES``. Closing with unread input would reset the
    connection, and a reset can destroy the answer before the client has read it. The caller
    bounds the time."""
    try:
        await stream.send_eof()
        left = LINGER_BYTES
        while left > 0:
            data = await stream.receive_some(RECEIVE_BYTES)
            if not data:
                return
            left -= len(data)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        pass
