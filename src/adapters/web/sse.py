"""One Server-Sent Events stream: the answer to ``GET /sse``, written for as long as it lasts.

The gateway decides what the stream says (``application.gateway.sse``); this module owns the
socket. The response is chunked (h11 frames each write; a client speaking HTTP/1.0 gets a body
ended by the close). Writes are made as on a WebSocket (``websocket``): a non-blocking attempt
for the fan-out, otherwise one write at a time under a lock, each bounded by ``WRITE_TIMEOUT``
(a client that stalls that long is dropped). The client sends nothing after its request, so
``receive`` only reads until the client goes, dropping what it reads (a bounded amount).
"""

from __future__ import annotations

from collections.abc import Sequence

import h11
import trio

from ...ports import ConnectionClosed, HttpRequest, HttpResponse, SendOutcome
from .http1 import RECEIVE_BYTES, HttpConnection, linger
from .socket_writer import SocketWriter
from .websocket import CLOSE_TIMEOUT, WRITE_TIMEOUT

MAX_IGNORED_BYTES = 65_536
"""What a client may send on its stream (it should send nothing) before it is dropped."""

_BLOCKED = SendOutcome.BLOCKED


class EventStreamConnection(SocketWriter):
    """A client's SSE stream (implements ``EventStream``); see the module doc.

    ``cors`` are the headers every answer carries for the request's origin (the server checked
    the origin before this stream was made).
    """

    def __init__(
        self,
        stream: trio.SocketStream,
        http: HttpConnection,
        request: HttpRequest,
        *,
        token: str | None,
        remote: str,
        cors: dict[str, str],
    ) -> None:
        super().__init__(stream)
        self._http = http
        self._h11 = http.machine
        self._request = request
        self._token = token
        self._remote = remote
        self._cors = cors
        self._open = False

    def take_token(self) -> str | None:
        token, self._token = self._token, None
        return token

    @property
    def remote(self) -> str:
        return self._remote

    @property
    def request(self) -> HttpRequest:
        return self._request

    # -- Before the stream -----------------------------------------------------------------------

    async def refuse(self, response: HttpResponse) -> None:
        headers = {**response.headers, **self._cors, "connection": "close"}
        refusal = HttpResponse(response.status, response.body, response.content_type, headers)
        with trio.move_on_after(WRITE_TIMEOUT):
            try:
                await self._http.respond(refusal)
                await linger(self._stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
                pass
        await self._end()

    async def open(self) -> None:
        headers = [
            ("content-type", "text/event-stream; charset=utf-8"),
            ("cache-control", "no-store"),
            ("x-accel-buffering", "no"),  # nginx: pass each event on at once
            ("server", "tidings"),
            ("x-content-type-options", "nosniff"),
            *self._cors.items(),
        ]
        head = self._h11.send(h11.Response(status_code=200, headers=headers)) or b""
        self._open = True
        await self._send(head, WRITE_TIMEOUT)

    # -- Reading ---------------------------------------------------------------------------------

    async def receive(self) -> str | bytes:
        """Read until the client goes, then raise ``ConnectionClosed`` (1006)."""
        ignored = 0
        while not self._ended:
            try:
                data = await self._stream.receive_some(RECEIVE_BYTES)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                break
            if not data:
                break
            ignored += len(data)
            if ignored > MAX_IGNORED_BYTES:
                raise ConnectionClosed(1006, "the client sent data on its event stream")
        raise ConnectionClosed(1006, "client left")

    # -- Writing ---------------------------------------------------------------------------------

    def _body(self, texts: Sequence[str]) -> bytes:
        data = texts[0] if len(texts) == 1 else "".join(texts)
        return self._h11.send(h11.Data(data=data.encode())) or b""

    async def send_many(self, frames: Sequence[str]) -> None:
        if self._ended or not self._open:
            raise ConnectionClosed(1006, "stream closing")
        await self._send(self._body(frames) if frames else b"", WRITE_TIMEOUT)

    def send_nowait(self, frames: Sequence[str]) -> SendOutcome:
        """One non-blocking write, when nothing else is being written (as ``websocket``)."""
        if self._held or self._ended or not self._open or not frames:
            return _BLOCKED
        return self._write_nowait(self._body(frames))

    # -- Closing ---------------------------------------------------------------------------------

    async def finish(self, text: str) -> None:
        """Write ``text`` and the end of the response within ``CLOSE_TIMEOUT``, then drop the
        socket; the browser reconnects after its ``retry`` delay."""
        if self._ended:
            return
        try:
            if self._open:
                data = self._body([text]) if text else b""
                data += self._h11.send(h11.EndOfMessage()) or b""
                await self._send(data, CLOSE_TIMEOUT)
        except (ConnectionClosed, h11.LocalProtocolError):
            pass
        finally:
            await self._end()

    async def close(self, code: int, reason: str = "") -> None:
        await self.finish("")
