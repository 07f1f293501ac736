"""A WebSocket test client for the gateway protocol, over trio-websocket."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote

import trio
import trio_websocket


class Client:
    def __init__(self, ws: trio_websocket.WebSocketConnection) -> None:
        self.ws = ws
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


@asynccontextmanager
async def connect(ws_url: str, token: str | None = None) -> AsyncIterator[Client]:
    url = ws_url + (f"?token={quote(token)}" if token else "")
    async with trio_websocket.open_websocket_url(url) as ws:
        client = Client(ws)
        client.connected = await client.recv()
        yield client
