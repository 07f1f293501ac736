"""An in-memory transport: clients in the same trio run as the gateway, no sockets.

Used to drive a gateway from Python in one process (tests, embedding). Frames travel over
bounded trio channels, so a client that stops reading applies backpressure exactly as a stalled
socket would.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Sequence
from typing import Any

import trio

from ...ports import ClientConnection, ConnectionClosed, ConnectionHandler, SendOutcome

_Frame = str | bytes | ConnectionClosed


class _Pipe:
    def __init__(self, size: int) -> None:
        self.send, self.receive = trio.open_memory_channel[_Frame](size)


class _ServerEnd:
    """The gateway's side of an in-memory connection (implements ``ClientConnection``)."""

    def __init__(self, token: str | None, inbound: _Pipe, outbound: _Pipe, name: str) -> None:
        self._token = token
        self._inbound = inbound
        self._outbound = outbound
        self._name = name
        self._closed: ConnectionClosed | None = None
        self._held: list[str] = []

    def take_token(self) -> str | None:
        token, self._token = self._token, None
        return token

    @property
    def remote(self) -> str:
        return self._name

    async def receive(self) -> str | bytes:
        if self._closed:
            raise self._closed
        try:
            frame = await self._inbound.receive.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            raise ConnectionClosed(1006, "client vanished") from None
        if isinstance(frame, ConnectionClosed):
            self._closed = frame
            raise frame
        return frame

    async def send_many(self, frames: Sequence[str]) -> None:
        if self._closed:
            raise self._closed
        held, self._held = self._held, []
        try:
            for frame in [*held, *frames]:
                await self._outbound.send.send(frame)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            self._closed = ConnectionClosed(1006, "client vanished")
            raise self._closed from None

    def send_nowait(self, frames: Sequence[str]) -> SendOutcome:
        if self._closed or self._held:
            return SendOutcome.BLOCKED
        for index, frame in enumerate(frames):
            try:
                self._outbound.send.send_nowait(frame)
            except trio.WouldBlock:
                if index == 0:
                    return SendOutcome.BLOCKED
                self._held = list(frames[index:])
                return SendOutcome.PARTIAL
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return SendOutcome.BLOCKED  # send_many will meet it and report the close
        return SendOutcome.SENT

    async def close(self, code: int, reason: str = "") -> None:
        if self._closed:
            return
        self._closed = ConnectionClosed(code, reason)
        with trio.move_on_after(1):
            try:
                await self._outbound.send.send(self._closed)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
        await self._outbound.send.aclose()


class MemoryClient:
    """The client's side: send and receive JSON frames as dicts."""

    def __init__(self, inbound: _Pipe, outbound: _Pipe) -> None:
        self._inbound = inbound
        self._outbound = outbound
        self.closed: ConnectionClosed | None = None

    async def send(self, frame: dict[str, Any] | str | bytes) -> None:
        text = frame if isinstance(frame, str | bytes) else json.dumps(frame)
        await self._outbound.send.send(text)

    async def receive(self) -> dict[str, Any]:
        """The next frame, decoded; raises ``ConnectionClosed`` once the server closed."""
        if self.closed:
            raise self.closed
        try:
            frame = await self._inbound.receive.receive()
        except trio.EndOfChannel:
            self.closed = ConnectionClosed(1006, "server vanished")
            raise self.closed from None
        if isinstance(frame, ConnectionClosed):
            self.closed = frame
            raise frame
        decoded: dict[str, Any] = json.loads(frame)
        return decoded

    async def close(self, code: int = 1000) -> None:
        if not self.closed:
            self.closed = ConnectionClosed(code, "client closed")
            try:
                await self._outbound.send.send(self.closed)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass
            await self._outbound.send.aclose()


class MemoryTransport:
    """Accepts in-memory connections (implements ``Transport``)."""

    def __init__(self, buffer: int = 64) -> None:
        self._buffer = buffer
        self._ids = itertools.count(1)
        self._accept_send, self._accept_receive = trio.open_memory_channel[ClientConnection](
            math.inf
        )

    async def connect(self, token: str | None = None) -> MemoryClient:
        to_server, to_client = _Pipe(self._buffer), _Pipe(self._buffer)
        server = _ServerEnd(token, to_server, to_client, f"memory-{next(self._ids)}")
        await self._accept_send.send(server)
        return MemoryClient(to_client, to_server)

    async def serve(self, handler: ConnectionHandler) -> None:
        async with trio.open_nursery() as nursery:
            async for connection in self._accept_receive:
                nursery.start_soon(handler, connection)
