"""A Server-Sent Events client for tests: raw HTTP over trio, parsed with h11 and the SSE rules.

It reads exactly what the gateway wrote (chunked body, ``id``/``event``/``data`` lines,
comments), so tests can assert the format itself, and it can stop reading (a slow reader).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode, urlsplit

import attrs
import h11
import trio


@attrs.define
class Event:
    """One dispatched event (``data`` decoded as JSON) or one comment (``comment`` set)."""

    event: str = "message"
    id: str | None = None
    data: Any = None
    comment: str | None = None
    retry: int | None = None


class EventStream:
    """An open ``GET /sse``: the response's status and headers, then its events in order."""

    def __init__(self, stream: trio.SocketStream, connection: h11.Connection) -> None:
        self.stream = stream
        self._h11 = connection
        self.status = 0
        self.headers: dict[str, str] = {}
        self.body = b""
        """A refusal's whole body (for a 200 the events are read with ``next``)."""
        self.ended = False
        self.dropped = False
        """The connection ended without the end of the response (a stalled reader is dropped)."""
        self.last_id: str | None = None
        """What a browser would send as ``Last-Event-ID``: the id of the last whole event."""
        self.seen: list[Event] = []
        self._buffer = ""

    async def _head(self) -> None:
        while True:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                self._h11.receive_data(await self.stream.receive_some(65_536))
                continue
            assert isinstance(event, h11.Response), event
            self.status = event.status_code
            self.headers = {k.decode().lower(): v.decode() for k, v in event.headers}
            break
        if self.status != 200:
            while not self.ended:
                chunk = await self._read()
                self.body += chunk.encode()

    async def _read(self) -> str:
        """The next piece of body text; '' once the response (or connection) ended."""
        while True:
            try:
                event = self._h11.next_event()
            except h11.RemoteProtocolError:  # dropped without the end of the body
                self.ended = self.dropped = True
                return ""
            if event is h11.NEED_DATA:
                try:
                    data = await self.stream.receive_some(65_536)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                self._h11.receive_data(data)
                continue
            if isinstance(event, h11.Data):
                return bytes(event.data).decode()
            self.ended = True
            return ""

    async def next(self, timeout: float, *, comments: bool = False) -> Event | None:
        """The next event (comments too if asked); None when the stream ended first."""
        with trio.fail_after(timeout):
            while True:
                block, sep, rest = self._buffer.partition("\n\n")
                if sep:
                    self._buffer = rest
                    event = self._parse(block)
                    if event is not None and (event.comment is None or comments):
                        self.seen.append(event)
                        return event
                    continue
                if self.ended:
                    return None
                self._buffer += await self._read()

    def _parse(self, block: str) -> Event | None:
        event = Event()
        data: list[str] = []
        has_fields = False
        for line in block.split("\n"):
            name, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if not name:
                event.comment = value
            elif name == "data":
                data.append(value)
                has_fields = True
            elif name == "event":
                event.event = value
            elif name == "id":
                self.last_id = value
                event.id = value
            elif name == "retry":
                event.retry = int(value)
        if data:
            event.data = json.loads("\n".join(data))
        if not has_fields and event.comment is None and event.retry is None:
            return None
        return event

    async def events(self, count: int, timeout: float) -> list[Event]:
        """The next ``count`` events that deliver messages (unnamed), skipping the others."""
        found: list[Event] = []
        while len(found) < count:
            event = await self.next(timeout)
            assert event is not None, f"the stream ended after {found}"
            if event.event == "message" and event.data is not None:
                found.append(event)
        return found

    async def until(self, name: str, timeout: float) -> Event:
        """Skip to the next event named ``name``."""
        while True:
            event = await self.next(timeout)
            assert event is not None, f"the stream ended before a {name!r} event"
            if event.event == name:
                return event


@asynccontextmanager
async def open_stream(
    base_url: str,
    channels: str | None,
    *,
    token: str | None = None,
    last_event_id: str | None = None,
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    timeout: float = 20.0,
) -> AsyncIterator[EventStream]:
    """``GET /sse?channels=...`` on a connection of its own; the stream, its head read."""
    parts = urlsplit(base_url)
    params = dict(query or {})
    if channels is not None:
        params["channels"] = channels
    if token is not None:
        params["token"] = token
    target = "/sse" + (f"?{urlencode(params)}" if params else "")
    sent = {"host": parts.netloc, "accept": "text/event-stream", **(headers or {})}
    if last_event_id is not None:
        sent["last-event-id"] = last_event_id
    with trio.fail_after(timeout):
        socket = await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    connection = h11.Connection(h11.CLIENT)
    request = h11.Request(method="GET", target=target, headers=list(sent.items()))
    data = (connection.send(request) or b"") + (connection.send(h11.EndOfMessage()) or b"")
    stream = EventStream(socket, connection)
    try:
        with trio.fail_after(timeout):
            await socket.send_all(data)
            await stream._head()
        yield stream
    finally:
        await trio.aclose_forcefully(socket)
