"""A TCP proxy in front of a gateway, for tests that cut a client's connection.

Threads, not trio: the same proxy serves trio tests, asyncio tests and subprocesses. ``cut()``
resets every connection through it (the client sees the connection lost without a close frame,
as when a network drops); ``refuse()`` resets new connections as they come (the gateway looks
unreachable) until ``accept()``.
"""

from __future__ import annotations

import socket
import struct
import threading


class TcpProxy:
    def __init__(self, target_port: int, target_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, socket.socket]] = []
        self._refusing = False
        self._closed = False
        self.accepted = 0
        """Connections accepted and forwarded so far."""
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/ws"

    def _accept(self) -> None:
        while True:
            try:
                downstream, _ = self._listener.accept()
            except OSError:
                return  # closed
            with self._lock:
                refusing = self._refusing or self._closed
            if refusing:
                _reset(downstream)
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
                upstream.settimeout(None)
            except OSError:
                _reset(downstream)
                continue
            with self._lock:
                self._pairs.append((downstream, upstream))
                self.accepted += 1
            for source, sink in ((downstream, upstream), (upstream, downstream)):
                threading.Thread(target=_pump, args=(source, sink), daemon=True).start()

    def cut(self) -> None:
        """Reset every connection through the proxy."""
        with self._lock:
            pairs, self._pairs = self._pairs, []
        for downstream, upstream in pairs:
            _reset(downstream)
            _reset(upstream)

    def refuse(self) -> None:
        """Cut every connection, and reset new ones until ``accept()``."""
        with self._lock:
            self._refusing = True
        self.cut()

    def accept(self) -> None:
        with self._lock:
            self._refusing = False

    def close(self) -> None:
        with self._lock:
            self._closed = True
        self._listener.close()
        self.cut()
        self._thread.join(5)


def _pump(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    for each in (source, sink):  # one side ended: end the other (a cut already reset both)
        try:
            each.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


def _reset(sock: socket.socket) -> None:
    """Close with a TCP reset. ``shutdown(SHUT_RD)`` first wakes a pump thread blocked reading
    it (closing alone would not, and the reset would wait for that thread)."""
    for step in (
        lambda: sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0)),
        lambda: sock.shutdown(socket.SHUT_RD),
        sock.close,
    ):
        try:
            step()
        except OSError:
            pass
