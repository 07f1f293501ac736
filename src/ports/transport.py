"""Client connections: how the gateway talks to browsers and other clients."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Protocol

import attrs


class ConnectionClosed(Exception):
    """The client went away; ``code`` is the close code it sent or 1006 for an abrupt loss."""

    def __init__(self, code: int = 1006, reason: str = "") -> None:
        self.code = code
        self.reason = reason
        super().__init__(f"connection closed ({code}) {reason}".rstrip())


class SendOutcome(enum.Enum):
    """What ``send_nowait`` managed."""

    SENT = "sent"
    """Every frame was written."""
    PARTIAL = "partial"
    """Some bytes were written; the connection holds the rest, which ``send_many`` sends first."""
    BLOCKED = "blocked"
    """Nothing was written; use ``send_many``."""


class FrameTooLarge(Exception):
    """A client frame over the transport's hard limit; the connection cannot continue."""


class ClientConnection(Protocol):
    """One client, seen by the gateway: frames in, frames out, a close."""

    def take_token(self) -> str | None:
        """The connection token the client presented when connecting, if any. Handed over once:
        the connection keeps no credentials for its life, and a second call gives None."""
        ...

    @property
    def remote(self) -> str:
        """Where the client connects from, for logs."""
        ...

    async def receive(self) -> str | bytes:
        """The next frame; raises ``ConnectionClosed`` when the client is gone."""
        ...

    async def send_many(self, frames: Sequence[str]) -> None:
        """Send frames in order, as few writes as the transport allows."""
        ...

    def send_nowait(self, frames: Sequence[str]) -> SendOutcome:
        """Write frames at once if that needs no waiting (the fast path of a fan-out: no task
        switch, one system call); otherwise say so and send nothing, or hold the rest."""
        ...

    async def close(self, code: int, reason: str = "") -> None: ...


ConnectionHandler = Callable[[ClientConnection], Awaitable[None]]


class RoutedConnection(ClientConnection, Protocol):
    """A WebSocket that knows where it was opened: the Pusher endpoint ``/app/{key}?protocol=7``
    decides from its path and query whom it serves (ADR 0035)."""

    @property
    def path(self) -> str:
        """The upgrade request's path, without the query."""
        ...

    @property
    def query(self) -> Mapping[str, str]:
        """The upgrade request's query parameters."""
        ...


RoutedHandler = Callable[[RoutedConnection], Awaitable[None]]


class EventStream(ClientConnection, Protocol):
    """A client's Server-Sent Events stream: one request, then one long response of text.

    Before ``open`` the gateway may ``refuse`` it with an HTTP error. After it, the frames sent
    are the response body's text as it is (the gateway formats the events); nothing comes in:
    ``receive`` only raises ``ConnectionClosed`` once the client is gone. ``finish`` (or
    ``close``) ends the response.
    """

    @property
    def request(self) -> HttpRequest:
        """The request (its token taken out: see ``take_token``)."""
        ...

    async def refuse(self, response: HttpResponse) -> None:
        """Answer with an error instead of the stream (then the connection closes)."""
        ...

    async def open(self) -> None:
        """Answer 200 with the stream's headers; the body follows with each send."""
        ...

    async def finish(self, text: str) -> None:
        """Write ``text`` if the client takes it at once (a short bound), end the response and
        the connection. Safe to call more than once, and under cancellation."""
        ...


StreamHandler = Callable[[EventStream], Awaitable[None]]


class Transport(Protocol):
    """Accepts client connections and hands each to the gateway until it ends."""

    async def serve(self, handler: ConnectionHandler) -> None:
        """Serve until cancelled."""
        ...


@attrs.frozen
class HttpRequest:
    method: str
    path: str
    query: dict[str, str] = attrs.field(factory=dict)
    headers: dict[str, str] = attrs.field(factory=dict)
    """Header names in lower case."""
    body: bytes = b""


@attrs.frozen
class HttpResponse:
    status: int
    body: bytes = b""
    content_type: str = "application/json"
    headers: dict[str, str] = attrs.field(factory=dict)


class HttpApi(Protocol):
    """The gateway's HTTP side (broadcast, health, metrics, the demo page), transport-neutral."""

    async def handle(self, request: HttpRequest) -> HttpResponse: ...
