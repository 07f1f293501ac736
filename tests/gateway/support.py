"""Helpers for the gateway protocol tests: tokens, channel names, the HTTP API, close codes."""

from __future__ import annotations

import re
import secrets
import socket
import struct
from collections.abc import Sequence
from functools import partial
from typing import Any

import httpx
import trio
import trio_websocket

from tests.conftest import API_KEY, SECRET
from tests.support.processes import Gateway
from tests.support.wsclient import Client
from tidings.adapters.jwt_tokens import JwtTokens
from tidings.client import Event, Subscription

WAIT = 20.0
"""Seconds to wait for a frame: the first message of a new Kafka channel takes a few seconds."""


def token(user: str, *, info: Any = None, ttl: float = 120, channels: Sequence[str] = ()) -> str:
    return JwtTokens(SECRET).issue(user, info=info, ttl=ttl, channels=tuple(channels))


def unique(prefix: str) -> str:
    """A channel name no other test uses (gateways are shared between tests)."""
    return f"{prefix}.{secrets.token_hex(4)}"


def auth(key: str | None = API_KEY) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"} if key is not None else {}


def post(
    gateway: Gateway,
    path: str,
    body: Any = None,
    *,
    key: str | None = API_KEY,
    content: bytes | None = None,
) -> httpx.Response:
    """A blocking POST to the gateway (call it through ``trio.to_thread.run_sync``)."""
    kwargs: dict[str, Any] = {"content": content} if content is not None else {"json": body}
    return httpx.post(gateway.url + path, headers=auth(key), timeout=WAIT, **kwargs)


async def apost(
    gateway: Gateway,
    path: str,
    body: Any = None,
    *,
    key: str | None = API_KEY,
    content: bytes | None = None,
) -> httpx.Response:
    return await trio.to_thread.run_sync(
        partial(post, gateway, path, body, key=key, content=content)
    )


async def aget(gateway: Gateway, path: str) -> httpx.Response:
    return await trio.to_thread.run_sync(partial(httpx.get, gateway.url + path, timeout=WAIT))


async def overflows(gateway: Gateway) -> float:
    """The gateway's count of clients cut for being slow (``tidings_queue_overflows_total``)."""
    text = (await aget(gateway, "/metrics")).text
    match = re.search(r"^tidings_queue_overflows_total (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


async def broadcast(
    gateway: Gateway,
    channel: str,
    event: str = "note",
    data: Any = None,
    *,
    exclude: str | None = None,
) -> dict[str, Any]:
    """``POST /broadcast`` one message; the gateway's answer (id, channel, position)."""
    body: dict[str, Any] = {"channel": channel, "event": event, "data": data}
    if exclude is not None:
        body["exclude"] = exclude
    response = await apost(gateway, "/broadcast", body)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


async def broadcast_many(
    gateway: Gateway, messages: list[dict[str, Any]], chunk: int = 100
) -> list[dict[str, Any]]:
    """``POST /broadcast`` lists of messages, in order; every answer."""
    results: list[dict[str, Any]] = []
    for start in range(0, len(messages), chunk):
        response = await apost(gateway, "/broadcast", messages[start : start + chunk])
        assert response.status_code == 200, response.text
        results += response.json()
    return results


async def expect_error(client: Client, code: int, timeout: float = WAIT) -> dict[str, Any]:
    """The next frame, which must be an error frame with ``code``."""
    frame = await client.recv(timeout)
    assert frame.get("type") == "error", f"expected error {code}, got {frame}"
    assert frame["data"]["code"] == code, f"expected error {code}, got {frame}"
    assert isinstance(frame["data"]["message"], str) and frame["data"]["message"], frame
    return frame


async def ping_pong(client: Client, timeout: float = WAIT) -> None:
    """The connection still works: a ping gets a pong (as the next frame)."""
    await client.send(type="ping")
    frame = await client.recv(timeout)
    assert frame == {"type": "pong"}, frame


async def close_code(client: Client, timeout: float = WAIT) -> int:
    """Read (and keep in ``client.seen``) frames until the server closes; the close code."""
    with trio.fail_after(timeout):
        while True:
            try:
                await client.recv(timeout)
            except trio_websocket.ConnectionClosed as exc:
                assert exc.reason is not None
                return int(exc.reason.code)


async def drain(client: Client, timeout: float = WAIT) -> tuple[int, list[dict[str, Any]]]:
    """Like ``close_code`` but also the frames received before the close."""
    before = len(client.seen)
    code = await close_code(client, timeout)
    return code, client.seen[before:]


def events_of(frames: Sequence[dict[str, Any]], name: str | None = None) -> list[dict[str, Any]]:
    return [f for f in frames if f.get("type") == "event" and (name is None or f["event"] == name)]


async def abort(client: Client, *, reset: bool = True) -> None:
    """Drop the TCP connection without a WebSocket close frame, like a killed client.

    ``reset``: send a TCP RST (as when the process dies with unread data); else a plain FIN.
    """
    assert client.stream is not None, "abort needs a client made by connect()"
    stream = client.stream.stream
    if reset:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    await stream.aclose()


async def next_events(sub: Subscription, count: int, timeout: float = WAIT) -> list[Event]:
    """The next ``count`` events of a ``tidings.client`` subscription, for the tests that read
    better at the level of channels and members than of frames."""
    events: list[Event] = []
    with trio.fail_after(timeout):
        async for event in sub:
            events.append(event)
            if len(events) == count:
                break
    return events
