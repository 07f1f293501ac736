"""Writing to a client's socket: what a WebSocket and an SSE stream share.

The fan-out writes without awaiting where it can (``_write_nowait``: one non-blocking
``os.write``); otherwise writes are made one at a time under a lock, each bounded in time
(``_send``), and a client that stalls that long is dropped. What the kernel does not take of a
non-blocking write is held and goes out first with the next write, so bytes never interleave.
"""

from __future__ import annotations

import os

import trio

from ...ports import ConnectionClosed, SendOutcome

_SENT, _PARTIAL, _BLOCKED = SendOutcome.SENT, SendOutcome.PARTIAL, SendOutcome.BLOCKED


class SocketWriter:
    """The writing half of a client connection; see the module doc."""

    __slots__ = ("_ended", "_held", "_lock", "_socket", "_stream")

    def __init__(self, stream: trio.SocketStream) -> None:
        self._stream = stream
        self._socket = stream.socket
        self._lock: trio.Lock | None = None
        self._held = b""
        """The tail of a partial non-blocking write: whatever is written next goes after it."""
        self._ended = False
        """The socket is closed (or being closed): nothing more is written to it."""

    def _write_nowait(self, data: bytes) -> SendOutcome:
        """One non-blocking write of ``data``, when nothing else is being written.

        The caller has checked that nothing is held and the connection is open. A free lock
        means no write is half done. The descriptor is asked for at each call: once the socket
        is closed it is -1, never a number the kernel gave to another connection.
        """
        if self._lock is not None and self._lock.locked():
            return _BLOCKED
        fd = self._socket.fileno()
        if fd < 0:
            return _BLOCKED
        try:
            written = os.write(fd, data)
        except OSError:  # would block, or the connection broke: the writer sorts it out
            return _BLOCKED
        if written == len(data):
            return _SENT
        self._held = data[written:]
        return _PARTIAL

    async def _send(self, data: bytes, timeout: float) -> None:
        """Write ``data`` after any held tail, under the lock, within ``timeout``; a write that
        stalls that long drops the socket. Raises ``ConnectionClosed``."""
        if self._lock is None:
            self._lock = trio.Lock()
        with trio.CancelScope(shield=True) as write:
            write.deadline = trio.current_time() + timeout
            async with self._lock:
                if self._ended:
                    raise ConnectionClosed(1006, "connection lost")
                data, self._held = self._held + data, b""
                try:
                    await self._stream.send_all(data)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    await self._end()
                    raise ConnectionClosed(1006, "connection lost") from None
        if write.cancelled_caught:
            await self._end()
            raise ConnectionClosed(1006, f"write stalled for {timeout:g} s; dropped")

    async def _end(self) -> None:
        if not self._ended:
            self._ended = True
            await trio.aclose_forcefully(self._stream)
