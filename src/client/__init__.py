"""A Python client for tidings gateways, for trio and asyncio programs.

    import tidings.client

    async with tidings.client.connect("ws://127.0.0.1:6001/ws", token=token) as client:
        sub = await client.subscribe("user.42")
        async for event in sub:
            print(event.event, event.data)

It speaks the gateway's WebSocket protocol (``docs/protocol.md``) as the browser client does:
it reconnects with back-off and jitter, asks a token provider again before each attempt,
resumes every channel from its last position (no gap, no duplicate), keeps presence members,
queues client events while disconnected, and raises typed errors. The same code runs under trio
and under asyncio (in trio's guest mode; ADR 0030). See ``docs/python-client.md``.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import trio

from .backoff import Backoff
from .connection import Client, Options, TokenSource, websocket_url
from .errors import (
    BadRequest,
    ClientClosed,
    ClientError,
    ConnectionLost,
    Forbidden,
    Gap,
    NotFound,
    RateLimited,
    TokenRefused,
    TooLarge,
    Unauthorized,
    Unavailable,
    error_for,
)
from .events import Event, State, StateChange
from .runner import GuestRunner, TrioRunner, acquire_guest, current_library, release_guest
from .subscription import Subscription

__all__ = [
    "Backoff",
    "BadRequest",
    "Client",
    "ClientClosed",
    "ClientError",
    "ConnectionLost",
    "Event",
    "Forbidden",
    "Gap",
    "NotFound",
    "RateLimited",
    "State",
    "StateChange",
    "Subscription",
    "TokenRefused",
    "TooLarge",
    "Unauthorized",
    "Unavailable",
    "connect",
    "error_for",
    "websocket_url",
]


@asynccontextmanager
async def connect(
    url: str,
    *,
    token: TokenSource = None,
    ping_interval: float = 25.0,
    pong_timeout: float = 10.0,
    connect_timeout: float = 10.0,
    close_timeout: float = 2.0,
    min_delay: float = 0.5,
    max_delay: float = 10.0,
    flood_delay: float = 30.0,
    max_retries: int | None = None,
    buffer: int = 1000,
    max_message_size: int = 16 * 2**20,
    on_state: Callable[[StateChange], object] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> AsyncIterator[Client]:
    """A client of the gateway at ``url`` for the ``async with`` block, under trio or asyncio.

    ``url``: ``ws://HOST:PORT/ws`` (``http://HOST:PORT`` works too; ``wss://`` behind TLS,
    checked against the system's CAs or ``ssl_context``). ``token``: a connection
    token, or a function (plain or async) returning one, asked before every attempt; None
    connects anonymously (public channels only). The block starts at once; the connection is
    opened, and reopened, in the background (``await client.wait_connected()`` to wait for it).
    Leaving the block closes the connection (1000), ends every subscription's iteration and
    stops every task of the client. The other arguments are described in
    ``docs/python-client.md``; a bad one raises ``ValueError`` naming it.
    """
    options = Options(
        ping_interval=ping_interval,
        pong_timeout=pong_timeout,
        connect_timeout=connect_timeout,
        close_timeout=close_timeout,
        min_delay=min_delay,
        max_delay=max_delay,
        flood_delay=flood_delay,
        max_retries=max_retries,
        buffer=buffer,
        max_message_size=max_message_size,
        on_state=on_state,
        ssl_context=ssl_context,
    )
    if current_library() == "trio":
        async with _trio_client(url, token, options) as client:
            yield client
        return
    guest = await acquire_guest()
    try:
        client = Client(url, token, GuestRunner(guest), options)
        await guest.call(guest.start, client._serve)
        try:
            yield client
        finally:
            # Shielded: the client closes (bounded by close_timeout) even when the block was
            # cancelled, and the guest run it lives in is not stopped under its feet.
            await asyncio.shield(guest.call(client._close))
    finally:
        await release_guest(guest)


@asynccontextmanager
async def _trio_client(url: str, token: TokenSource, options: Options) -> AsyncIterator[Client]:
    client = Client(url, token, TrioRunner(), options)
    try:
        async with trio.open_nursery() as nursery:
            await nursery.start(client._serve)
            try:
                yield client
            finally:
                with trio.CancelScope(shield=True):
                    await client._close()
    except BaseExceptionGroup as group:
        # The nursery wraps what the block raised; give it back as raised, so that
        # ``except Forbidden`` around the block works as it reads.
        if len(group.exceptions) == 1 and not isinstance(group.exceptions[0], BaseExceptionGroup):
            raise group.exceptions[0] from None
        raise
