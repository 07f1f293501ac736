"""One connection's outbox: a bounded queue of encoded frames, and the task that writes them.

The dispatcher hands frames that are already encoded (one encoding per broadcast, shared by every
recipient) and never waits: ``offer`` only appends, and says with its result when the queue is
full, so the session decides what overflow means (it cuts the client as too slow). A write
first tries one non-blocking write (``kick``); only when the socket is full does a writer task
take over, sending everything pending in one call, and it ends after ``WRITER_LINGER`` seconds
without work, so an idle connection holds no task of its own beyond its reader.

A fan-out does not kick its recipients itself: it marks their outboxes pending in the
``Flusher``, whose one task kicks each pending outbox once, a chunk at a time, letting the other
ready tasks (HTTP requests, the feed) run between chunks. Frames that arrive for an outbox before
its turn share its write (ADR 0038).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

import trio

from ...ports import ClientConnection, ConnectionClosed, SendOutcome

log = logging.getLogger("tidings.gateway")

WRITER_LINGER = 5.0
"""Seconds a writer waits for more frames before it ends (and is started again)."""

# Read once per recipient of a fan-out: a module name is about 75 ns quicker than an Enum member
# looked up on its class (CPython 3.11), a tenth of what the rest of a delivery costs.
_SENT, _BLOCKED = SendOutcome.SENT, SendOutcome.BLOCKED

Spawn = Callable[[Callable[[], Awaitable[None]]], None]
"""Starts a task in the nursery that owns every writer (the gateway's)."""


class Outbox:
    """See the module doc. ``on_lost`` is told when a write finds the client gone."""

    __slots__ = (
        "_capacity",
        "_closed",
        "_connection",
        "_drained",
        "_on_lost",
        "_queue",
        "_ready",
        "_spawn",
        "_writing",
    )

    def __init__(
        self,
        connection: ClientConnection,
        capacity: int,
        spawn: Spawn,
        on_lost: Callable[[str], None],
    ) -> None:
        self._connection = connection
        self._capacity = capacity
        self._spawn = spawn
        self._on_lost = on_lost
        # A list, not a deque: the writer takes it whole, and an empty list is 56 bytes where an
        # empty deque is 600; the events exist only while someone waits on them.
        self._queue: list[str] = []
        self._ready: trio.Event | None = None
        self._drained: trio.Event | None = None
        self._writing = False
        self._closed = False

    def __len__(self) -> int:
        return len(self._queue)

    def offer(self, frame: str, *, defer: bool = False) -> bool:
        """Queue a frame without waiting; False when the queue is full (nothing was queued).

        The frame goes out at once if the connection takes it without waiting (``kick``);
        ``defer`` leaves that to the caller (a fan-out: the hub's ``Flusher`` kicks it once, soon).
        """
        queue = self._queue
        if len(queue) >= self._capacity:
            return False
        queue.append(frame)
        if self._writing:
            if self._ready is not None:
                self._ready.set()
        elif not defer:
            self.kick()
        return True

    def kick(self) -> None:
        """Send what is queued now if the connection takes it without waiting; otherwise start
        the writer task. A fan-out thus costs one system call per recipient, no task switch."""
        if self._writing or not self._queue or self._closed:
            return
        frames, self._queue = self._queue, []
        outcome = self._connection.send_nowait(frames)
        if outcome is _SENT:
            return
        if outcome is _BLOCKED:
            self._queue = frames + self._queue
        self._writing = True  # PARTIAL: the connection holds the rest; the writer flushes it
        self._spawn(self._write)

    async def put(self, frame: str) -> bool:
        """Queue a frame, waiting while the queue is half full (replays; never the dispatcher).
        False when the outbox closed meanwhile or the queue is full."""
        while len(self._queue) >= max(1, self._capacity // 2) and not self._closed:
            self._drained = trio.Event()
            await self._drained.wait()
        self._drained = None
        return not self._closed and self.offer(frame)

    async def flush(self) -> None:
        """Send what is queued now (right before a deliberate close)."""
        frames, self._queue = self._queue, []
        if frames:
            await self._connection.send_many(frames)

    def close(self) -> None:
        """Stop: the writer ends after its current write, and waiters wake up. The ``on_lost``
        callback is dropped: it refers to the session, which refers to this outbox, and a cycle
        would keep both until a full garbage collection (ADR 0015 keeps those rare)."""
        self._closed = True
        self._on_lost = _ignore
        for event in (self._ready, self._drained):
            if event is not None:
                event.set()

    async def _write(self) -> None:
        """Send queued frames, all pending ones in one call, until idle or closed."""
        try:
            await self._connection.send_many([])  # what a partial write left behind, if anything
            while not self._closed:
                if not self._queue:
                    self._ready = trio.Event()
                    with trio.move_on_after(WRITER_LINGER):
                        await self._ready.wait()
                    self._ready = None
                    if not self._queue:
                        return
                    continue
                frames, self._queue = self._queue, []
                if self._drained is not None:
                    self._drained.set()
                await self._connection.send_many(frames)
        except ConnectionClosed as exc:
            self._on_lost(str(exc))
        finally:
            self._writing = False


def _ignore(reason: str) -> None:
    """What a closed outbox does when it finds the client gone: nothing more to do."""


FLUSH_CHUNK = 256
"""Outboxes the flusher kicks before it lets the other ready tasks run (about 1-3 ms of writes)."""


class Flusher:
    """Writes the outboxes a fan-out left pending: each once per pass, in the order they were
    marked, ``FLUSH_CHUNK`` at a time with a checkpoint between chunks (see the module doc).

    ``pending`` is the fan-out's to fill (``mark``); ``wake`` starts a pass. Until ``run`` runs
    (a hub used without a gateway), ``wake`` writes at once, as a fan-out did before.
    """

    __slots__ = ("_running", "_wanted", "passes", "pending")

    def __init__(self) -> None:
        self.pending: dict[Outbox, None] = {}
        self._wanted: trio.Event | None = None
        self._running = False
        self.passes = 0
        """Flush passes made (for tests and the curious)."""

    def wake(self) -> None:
        """Have what is pending written soon: by the flusher's task in trio's next batch of
        tasks, after those ready now; at once when no task runs."""
        if not self._running:
            self.flush_now()
        elif self._wanted is not None:
            self._wanted.set()

    def flush_now(self) -> None:
        """Write every pending outbox now (a fan-out bounding the work before its first write)."""
        batch, self.pending = self.pending, {}
        _kick_all(list(batch))

    async def run(self) -> None:
        """Flush passes until cancelled; what is pending when cancelled is written first."""
        self._running = True
        batch: list[Outbox] = []
        try:
            while True:
                if not self.pending:
                    self._wanted = trio.Event()
                    await self._wanted.wait()
                    self._wanted = None
                batch, self.pending = list(self.pending), {}
                self.passes += 1
                while batch:
                    chunk, batch = batch[:FLUSH_CHUNK], batch[FLUSH_CHUNK:]
                    _kick_all(chunk)
                    if batch:
                        await trio.lowlevel.checkpoint()
        finally:
            self._running = False
            _kick_all(batch)
            self.flush_now()


def _kick_all(outboxes: list[Outbox]) -> None:
    """Kick each outbox; one that fails leaves the others to be written."""
    for outbox in outboxes:
        try:
            outbox.kick()
        except Exception:
            log.exception("writing to a connection failed; the others are written")
