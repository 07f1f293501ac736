"""A WebSocket test client for the gateway protocol, over trio-websocket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, urlsplit

import trio
import trio_websocket
from wsproto.connection import Connection, ConnectionType
from wsproto.events import TextMessage


class Client:
    def __init__(
        self, ws: trio_websocket.WebSocketConnection, stream: SharedStream | None = None
    ) -> None:
        self.ws = ws
        self.stream = stream
        """The TCP stream under ``ws`` when ``connect`` opened it: for tests that must write raw
        bytes or drop the connection without a WebSocket close."""
        self.connected: dict[str, Any] = {}
        self.seen: list[dict[str, Any]] = []

    @property
    def id(self) -> str:
        return str(self.connected["data"]["connection_id"])

    async def send(self, **frame: Any) -> None:
        await self.ws.send_message(json.dumps(frame))

    async def send_raw(self, text: str | bytes) -> None:
        await self.ws.send_message(text)

    async def recv(self, timeout: float = 15) -> dict[str, Any]:
        with trio.fail_after(timeout):
            frame: dict[str, Any] = json.loads(await self.ws.get_message())
        self.seen.append(frame)
        return frame

    async def expect(self, timeout: float = 15, **fields: Any) -> dict[str, Any]:
        """The next frame whose fields equal ``fields`` (others before it are kept in ``seen``)."""
        with trio.fail_after(timeout):
            while True:
                frame = await self.recv(timeout)
                if all(frame.get(key) == value for key, value in fields.items()):
                    return frame

    async def subscribe(self, channel: str, since: str | None = None) -> dict[str, Any]:
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
        if since is not None:
            frame["since"] = since
        await self.send(**frame)
        reply = await self.recv()
        assert reply["type"] == "subscribed" and reply["channel"] == channel, reply
        return reply

    async def events(self, count: int, timeout: float = 20) -> list[dict[str, Any]]:
        """The next ``count`` event frames (other frames are skipped and kept in ``seen``)."""
        found: list[dict[str, Any]] = []
        with trio.fail_after(timeout):
            while len(found) < count:
                frame = await self.recv(timeout)
                if frame.get("type") == "event":
                    found.append(frame)
        return found

    async def nothing_more(self, wait: float = 0.5) -> None:
        """Assert no frame arrives within ``wait`` seconds (a bounded check, not a sync point)."""
        with trio.move_on_after(wait):
            frame = await self.ws.get_message()
            raise AssertionError(f"unexpected frame: {frame}")


class SharedStream(trio.abc.Stream):
    """A TCP stream whose writes go through one lock: trio-websocket's (a close, a pong) and a
    test's raw bursts never interleave."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.lock = trio.Lock()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        async with self.lock:
            await self.stream.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        return bytes(await self.stream.receive_some(max_bytes))

    async def aclose(self) -> None:
        await self.stream.aclose()


@asynccontextmanager
async def connect(ws_url: str, token: str | None = None) -> AsyncIterator[Client]:
    """A client connected to the gateway at ``ws_url`` (``ws://host:port/ws``), past its
    ``connected`` frame. The TCP stream is opened here and handed to trio-websocket through its
    public ``wrap_client_stream``, so that tests can reach it without private names."""
    parts = urlsplit(ws_url)
    resource = parts.path + (f"?token={quote(token)}" if token else "")
    stream = SharedStream(
        await trio.open_tcp_stream(parts.hostname or "127.0.0.1", parts.port or 80)
    )
    try:
        async with trio.open_nursery() as nursery:
            ws = await trio_websocket.wrap_client_stream(nursery, stream, parts.netloc, resource)
            try:
                client = Client(ws, stream)
                client.connected = await client.recv()
                yield client
            finally:
                with trio.move_on_after(2, shield=True):
                    await ws.aclose()
                await trio.aclose_forcefully(stream)
                nursery.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        # The nursery wraps what the caller's block raised; give it back as raised, so that an
        # ``except ConnectionClosed`` around ``connect()`` works as it reads.
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from None
        raise


async def send_burst(client: Client, frame: str, count: int) -> None:
    """``count`` copies of ``frame`` in one write, as fast as a client can possibly send: masked
    client frames made by a wsproto connection of our own."""
    assert client.stream is not None, "send_burst needs a client made by connect()"
    framer = Connection(ConnectionType.CLIENT)
    data = b"".join(framer.send(TextMessage(data=frame)) for _ in range(count))
    await client.stream.send_all(data)  # under the lock trio-websocket's writes take too
