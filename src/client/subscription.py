"""One channel of a client: what it received, waiting to be read, and where it stands."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import trio

from ..domain.channel import ChannelKind, kind_of
from .cursor import Cursor
from .errors import BadRequest, ClientError, Gap
from .events import Event
from .runner import check_library

if TYPE_CHECKING:
    from .connection import Client

Item = Event | ClientError


class Subscription:
    """A channel of a ``Client``: ``async for event in sub`` yields its events in order.

    Events wait in a bounded buffer (``buffer`` of ``connect``) until read. When it is full the
    client stops reading the connection, so a subscription nobody reads holds up the others;
    the gateway eventually cuts such a connection as a slow consumer (4008) and the client
    resumes every channel from its last position, so nothing is lost either way.

    Iteration raises ``Gap`` where messages were missed (410) and the error of a refused client
    event, once each, and the subscription stays live: iterate again to go on. It ends (the
    ``async for`` finishes) after ``unsubscribe()`` or when the client closes, once the events
    already received are read; after a refusal or a client that gave up, it raises that error
    first.
    """

    def __init__(self, client: Client, channel: str, since: str | None, buffer: int) -> None:
        self.channel = channel
        self.kind: ChannelKind = kind_of(channel)
        self.state = "pending"
        """``"pending"`` until the gateway confirms (again after each reconnect),
        ``"subscribed"``, ``"failed"`` when refused, ``"unsubscribed"`` when ended."""
        self._client = client
        self._cursor = Cursor(since)
        self._input, self._output = trio.open_memory_channel[Item](buffer)
        self._settled = trio.Event()
        self._refusal: ClientError | None = None
        self._ending: ClientError | None = None
        self._queue: list[dict[str, Any]] = []
        """Client events waiting for the subscription to be confirmed."""
        self._ended = False

    def __repr__(self) -> str:
        return f"<Subscription {self.channel} {self.state} position={self.position}>"

    @property
    def position(self) -> str | None:
        """The last position seen (opaque), handed back as ``since`` after a reconnect."""
        return self._cursor.position

    @property
    def members(self) -> dict[str, Any]:
        """Presence channels: user id -> user info, kept up to date (a copy)."""
        return dict(self._cursor.members)

    @property
    def is_presence(self) -> bool:
        return self.kind is ChannelKind.PRESENCE

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        runner = self._client._runner
        item = self._buffered() if runner.library == "asyncio" else None
        if item is None:
            item = await runner.call(self._next)
        if item is None:
            raise StopAsyncIteration
        if isinstance(item, ClientError):
            raise item
        return item

    async def unsubscribe(self) -> None:
        """Leave the channel; iteration ends once the events already received are read."""
        await self._client._runner.call(self._client._unsubscribe, self)

    async def trigger(self, event: str, data: Any = None) -> bool:
        """Send a client event to the channel's other subscribers; see ``Client.trigger``."""
        return await self._client.trigger(self.channel, event, data)

    def _buffered(self) -> Item | None:
        """An event already buffered, taken without a round trip through the guest run (asyncio
        callers): a few microseconds instead of about a hundred (ADR 0030). Only when no reader
        waits to add one, so that taking it reschedules no trio task: then it is a plain
        sync-coloured call, which trio allows from the host's thread."""
        check_library("asyncio")
        stats = self._output.statistics()
        if not stats.current_buffer_used or stats.tasks_waiting_send:
            return None
        try:
            return self._output.receive_nowait()
        except (trio.WouldBlock, trio.EndOfChannel, trio.ClosedResourceError):
            return None

    # -- The client's side (trio) --------------------------------------------------------------

    async def _next(self) -> Item | None:
        try:
            return await self._output.receive()
        except (trio.EndOfChannel, trio.ClosedResourceError):
            ending, self._ending = self._ending, None
            return ending

    async def _deliver(self, item: Item) -> None:
        """Hand ``item`` to the reader; waits while the buffer is full (see the class doc)."""
        try:
            self._input.send_nowait(item)
        except trio.WouldBlock:
            self._client._busy = True
            try:
                await self._input.send(item)
            except (trio.ClosedResourceError, trio.BrokenResourceError):
                pass  # unsubscribed while waiting
            finally:
                self._client._busy = False
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            pass

    def _subscribe_frame(self) -> dict[str, Any]:
        self.state = "pending"
        return self._cursor.subscribe_frame(self.channel)

    async def _subscribed(self, data: Any) -> list[dict[str, Any]]:
        """The gateway confirmed; the client events queued meanwhile, to send now."""
        if self.state in ("failed", "unsubscribed"):
            return []
        self._cursor.subscribed(data)
        self.state = "subscribed"
        self._settled.set()
        queued, self._queue = self._queue, []
        return queued

    async def _event(self, frame: dict[str, Any]) -> None:
        if self.state in ("failed", "unsubscribed") or not self._cursor.accept(frame):
            return
        await self._deliver(Event.from_frame(frame))

    async def _error(self, error: ClientError) -> str:
        """An error frame about this channel: ``"gap"``, ``"failed"`` (refused) or ``"error"``."""
        if isinstance(error, Gap):
            self._cursor.gap()
            await self._deliver(error)
            return "gap"
        if self.state == "pending" and isinstance(error, BadRequest) and self._cursor.resuming:
            # The gateway cannot read our position (another version?): start afresh, and say
            # that messages may have been missed.
            self._cursor.forget_position()
            await self._client._send(self._subscribe_frame())
            await self._deliver(Gap(error.message, code=error.code, channel=self.channel))
            return "gap"
        if self.state == "pending":
            self.state = "failed"
            self._queue = []
            if self._settled.is_set():
                self._end(error)  # a resubscribe refused: iteration raises it, then ends
            else:
                self._refusal = error  # the subscribe() call raises it
                self._end(None)
            return "failed"
        await self._deliver(error)
        return "error"

    def _disconnected(self) -> None:
        if self.state == "subscribed":
            self.state = "pending"

    def _end(self, error: ClientError | None, state: str | None = None) -> None:
        """No more events: iteration raises ``error`` (if any) after the buffered ones, then
        stops. Idempotent."""
        if state is not None:
            self.state = state
        elif self.state != "failed":
            self.state = "unsubscribed"
        if self._ended:
            return
        self._ended = True
        if error is not None and self._refusal is None:
            self._ending = error
        self._queue = []
        self._input.close()
        self._settled.set()
