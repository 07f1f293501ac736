"""Helpers for the cluster tests: clients read in the background, waits on conditions, HTTP."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import httpx
import trio
import trio_websocket

from tests.conftest import API_KEY, SECRET
from tests.support.wsclient import Client, connect
from tidings.adapters.jwt_tokens import JwtTokens

from .conftest import Node

WAIT = 20.0
"""Seconds to wait for a frame or condition (a new channel's first message takes a few seconds)."""


def token(user: str, *, info: Any = None, ttl: float = 600) -> str:
    return JwtTokens(SECRET).issue(user, info=info, ttl=ttl)


class Listener:
    """A connected client whose frames are read by a background task, with arrival times.

    Tests send with ``client.send`` and wait with ``wait_for`` for a condition on what arrived;
    nothing sleeps and hopes.
    """

    def __init__(self, client: Client, name: str, node: Node) -> None:
        self.client = client
        self.name = name
        self.node = node
        self.frames: list[dict[str, Any]] = []
        self.times: list[float] = []
        self.closed: int | None = None
        """The close code once the server closed the connection (1006 when it just dropped)."""
        self.closed_at: float | None = None
        self._changed = trio.Event()

    def __repr__(self) -> str:
        return f"<Listener {self.name} on {self.node.id}>"

    @property
    def id(self) -> str:
        return self.client.id

    async def run(self) -> None:
        try:
            while True:
                text = await self.client.ws.get_message()
                self.frames.append(json.loads(text))
                self.times.append(trio.current_time())
                self._notify()
        except trio_websocket.ConnectionClosed as exc:
            self.closed = exc.reason.code if exc.reason is not None else 1006
            self.closed_at = trio.current_time()
            self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, condition: Callable[[], Any], what: str, timeout: float = WAIT) -> Any:
        """Wait until ``condition()`` is truthy; return it. Fails naming ``what``."""
        with trio.move_on_after(timeout):
            while True:
                result = condition()
                if result:
                    return result
                if self.closed is not None:
                    result = condition()
                    if result:
                        return result
                    break
                await self._changed.wait()
        tail = self.frames[-5:]
        raise AssertionError(
            f"{self}: no {what} within {timeout} s (closed={self.closed}); last frames: {tail}"
        )

    # -- Frames --------------------------------------------------------------------------

    def events(self, channel: str | None = None, event: str | None = None) -> list[dict[str, Any]]:
        return [
            frame
            for frame in self.frames
            if frame.get("type") == "event"
            and (channel is None or frame.get("channel") == channel)
            and (event is None or frame.get("event") == event)
        ]

    def of_type(self, kind: str, channel: str | None = None) -> list[dict[str, Any]]:
        return [
            frame
            for frame in self.frames
            if frame.get("type") == kind and (channel is None or frame.get("channel") == channel)
        ]

    async def subscribe(self, channel: str, since: str | None = None) -> dict[str, Any]:
        """Subscribe and wait for this channel's next ``subscribed`` frame (or fail on an error)."""
        before = len(self.of_type("subscribed", channel))
        errors = len(self.of_type("error", channel))
        frame: dict[str, Any] = {"type": "subscribe", "channel": channel}
        if since is not None:
            frame["since"] = since
        await self.client.send(**frame)

        def answered() -> Any:
            refused = self.of_type("error", channel)[errors:]
            if refused and since is None:
                raise AssertionError(f"{self}: subscribe {channel} refused: {refused[0]}")
            got = self.of_type("subscribed", channel)
            return got[before] if len(got) > before else None

        reply: dict[str, Any] = await self.wait_for(answered, f"subscribed to {channel}")
        return reply

    async def ping(self) -> None:
        """A ping answered: every frame the server queued before it has arrived."""
        pongs = len(self.of_type("pong"))
        await self.client.send(type="ping")
        await self.wait_for(lambda: len(self.of_type("pong")) > pongs, "pong")

    # -- Presence ------------------------------------------------------------------------

    def presence(self, channel: str) -> tuple[set[str], list[str]]:
        """The member set this client knows of ``channel`` (its ``subscribed`` list, then the
        joins and leaves after it), and the anomalies on the way (a join of a member already
        present, a leave of one absent, a second ``subscribed``)."""
        members: set[str] = set()
        anomalies: list[str] = []
        subscribed = False
        for frame in self.frames:
            if frame.get("channel") != channel:
                continue
            if frame.get("type") == "subscribed":
                if subscribed:
                    anomalies.append("second subscribed frame")
                subscribed = True
                members = {member["user_id"] for member in frame["data"]["members"]}
            elif frame.get("type") == "event" and frame["event"] == "presence.join":
                user = frame["data"]["user_id"]
                if user in members:
                    anomalies.append(f"join of {user}, already a member")
                members.add(user)
            elif frame.get("type") == "event" and frame["event"] == "presence.leave":
                user = frame["data"]["user_id"]
                if user not in members:
                    anomalies.append(f"leave of {user}, not a member")
                members.discard(user)
        return members, anomalies

    def presence_events(self, channel: str) -> list[tuple[str, str]]:
        return [
            (frame["event"].removeprefix("presence."), frame["data"]["user_id"])
            for frame in self.events(channel)
            if frame["event"].startswith("presence.")
        ]

    def arrival(self, channel: str, event: str, user: str) -> float | None:
        """When the first ``event`` of ``user`` on ``channel`` arrived (trio clock)."""
        for frame, at in zip(self.frames, self.times, strict=True):
            if (
                frame.get("type") == "event"
                and frame.get("channel") == channel
                and frame.get("event") == event
                and frame["data"]["user_id"] == user
            ):
                return at
        return None

    async def wait_members(self, channel: str, expected: set[str], timeout: float = WAIT) -> None:
        await self.wait_for(
            lambda: self.presence(channel)[0] == expected,
            f"member list {sorted(expected)} on {channel}",
            timeout,
        )


@asynccontextmanager
async def listening(
    nursery: trio.Nursery,
    node: Node,
    user: str | None = None,
    *,
    name: str = "",
    info: Any = None,
) -> AsyncIterator[Listener]:
    """A client of ``node`` (as ``user``, if given) read in the background until closed."""
    async with connect(node.ws_url, token(user, info=info) if user else None) as client:
        listener = Listener(client, name or (user or "anonymous"), node)
        nursery.start_soon(listener.run)
        yield listener


# -- HTTP ------------------------------------------------------------------------------------


def _post(url: str, body: Any) -> httpx.Response:
    return httpx.post(
        url + "/broadcast",
        json=body,
        headers={"authorization": f"Bearer {API_KEY}"},
        timeout=WAIT,
    )


async def publish(node: Node, messages: Sequence[dict[str, Any]] | dict[str, Any]) -> Any:
    """``POST /broadcast`` to ``node`` (one message or a list of up to 100); the answer."""
    body = list(messages) if isinstance(messages, Sequence) else messages
    response = await trio.to_thread.run_sync(_post, node.url, body)
    assert response.status_code == 200, f"{node}: {response.status_code} {response.text}"
    return response.json()


async def health(node: Node) -> tuple[int, dict[str, Any]]:
    response = await trio.to_thread.run_sync(
        partial(httpx.get, node.url + "/healthz", timeout=WAIT)
    )
    return response.status_code, response.json()


async def wait_health(
    node: Node,
    condition: Callable[[dict[str, Any]], bool],
    what: str,
    timeout: float = WAIT,
    interval: float = 0.1,
) -> dict[str, Any]:
    """Poll ``/healthz`` of ``node`` until ``condition`` holds on its JSON."""
    last: dict[str, Any] = {}
    with trio.move_on_after(timeout):
        while True:
            _, last = await health(node)
            if condition(last):
                return last
            await trio.sleep(interval)
    raise AssertionError(f"{node}: /healthz not {what} within {timeout} s; last: {last}")


def seqs(frames: Sequence[dict[str, Any]]) -> list[int]:
    return [frame["data"]["seq"] for frame in frames]
