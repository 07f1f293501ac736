"""A raw WebSocket client for hostile tests: hand-built RFC 6455 frames over a plain socket.

A WebSocket library cannot send what these tests must send (unmasked client frames, reserved
bits, lying lengths, a Ping after the server's Close, an upgrade pipelined behind a request),
and it hides what the server answers. So frames are built here byte by byte, and everything the
server sends back is parsed by hand and checked as it arrives: HTTP responses until a 101, then
server frames, each of which must be well formed (unmasked, no reserved bit, a known opcode,
control frames whole and short, minimal lengths, UTF-8 text and close reasons, a valid close
code), and nothing at all may follow the server's Close. A violation is an ``AssertionError``
that shows the bytes.

Sockets are blocking with bounded waits, so the Hypothesis state machine and the containment
tests can drive them step by step, without an event loop of their own.
"""

from __future__ import annotations

import base64
import os
import select
import socket
import struct
import time
from collections.abc import Callable, Iterable
from typing import TypeVar

import attrs

T = TypeVar("T")

CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
OPCODES = frozenset({CONTINUATION, TEXT, BINARY, CLOSE, PING, PONG})
CONTROL = frozenset({CLOSE, PING, PONG})
RESERVED_OPCODES = tuple(sorted(set(range(16)) - OPCODES))

KEY = base64.b64encode(b"tidings-raw-key!").decode()


def valid_close_code(code: int) -> bool:
    """A code an endpoint may put in a Close frame (RFC 6455 §7.4)."""
    return code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011) or (3000 <= code <= 4999)


# -- Building what a client sends ----------------------------------------------------------------


def frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    mask: bytes | None = b"\x37\xfa\x21\x3d",
    length: int | None = None,
    width: int | None = None,
) -> bytes:
    """One frame as a client would send it (masked with ``mask``; ``None`` sends it unmasked).

    ``rsv`` is the three reserved bits (0-7). ``length`` declares a payload length other than the
    real one (a lie); ``width`` forces the length field's encoding (7, 16 or 64 bits), so that a
    non-minimal encoding can be sent.
    """
    declared = len(payload) if length is None else length
    if width is None:
        width = 7 if declared < 126 else 16 if declared < 65_536 else 64
    first = (0x80 if fin else 0) | (rsv & 0x7) << 4 | opcode & 0xF
    mask_bit = 0x80 if mask is not None else 0
    if width == 7:
        head = bytes((first, mask_bit | declared))
    elif width == 16:
        head = struct.pack("!BBH", first, mask_bit | 126, declared)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, declared)
    if mask is None:
        return head + payload
    return head + mask + masked(payload, mask)


def masked(payload: bytes, mask: bytes) -> bytes:
    """``payload`` XORed with the four-byte ``mask`` (RFC 6455 §5.3)."""
    if not payload:
        return b""
    repeated = (mask * (len(payload) // 4 + 1))[: len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        len(payload), "big"
    )


def close_payload(code: int | None = 1000, reason: bytes = b"") -> bytes:
    """The payload of a Close frame: empty when ``code`` is None."""
    return b"" if code is None else struct.pack("!H", code) + reason


def upgrade_request(
    target: str = "/ws",
    *,
    key: str | None = KEY,
    version: str = "13",
    headers: Iterable[tuple[str, str]] = (),
) -> bytes:
    """A WebSocket upgrade request head (a good one by default)."""
    lines = [
        f"GET {target} HTTP/1.1",
        "Host: 127.0.0.1",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Version: {version}",
    ]
    if key is not None:
        lines.append(f"Sec-WebSocket-Key: {key}")
    lines += [f"{name}: {value}" for name, value in headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def http_request(method: str = "GET", target: str = "/healthz") -> bytes:
    """A keep-alive HTTP/1.1 request without a body."""
    return f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


# -- Parsing and checking what the server sends --------------------------------------------------


class BadServerOutput(AssertionError):
    """The server sent something that is not a well-formed HTTP response or server frame."""


@attrs.frozen
class HttpAnswer:
    status: int
    headers: dict[str, str]
    body: bytes


@attrs.frozen
class Frame:
    fin: bool
    opcode: int
    payload: bytes

    @property
    def close_code(self) -> int | None:
        """The code of a Close frame (None when its payload is empty)."""
        return struct.unpack("!H", self.payload[:2])[0] if len(self.payload) >= 2 else None


@attrs.define
class ServerOutput:
    """Everything a server sent on one connection, parsed and checked as it arrives."""

    raw: bytearray = attrs.field(factory=bytearray)
    answers: list[HttpAnswer] = attrs.field(factory=list)
    frames: list[Frame] = attrs.field(factory=list)
    messages: list[tuple[int, bytes]] = attrs.field(factory=list)
    """Whole data messages: (opcode, payload), fragments joined."""
    close: Frame | None = None
    """The server's Close frame, once it came."""
    upgraded: bool = False
    heads: set[int] = attrs.field(factory=set)
    """Indexes of the answers to HEAD requests, which have no body whatever their length says
    (RFC 9110 §9.3.2): the sender adds them, since the answers alone cannot tell."""
    _buffer: bytearray = attrs.field(factory=bytearray)
    _fragments: list[Frame] = attrs.field(factory=list)

    def feed(self, data: bytes) -> None:
        self.raw += data
        self._buffer += data
        while self._buffer:
            if self.close is not None:
                raise self._bad(f"{len(self._buffer)} bytes after the server's Close frame")
            taken = self._take_frame() if self.upgraded else self._take_answer()
            if not taken:
                return

    def end(self) -> None:
        """The server closed the socket: what is left must not be a truncated answer."""
        if self._buffer:
            what = "frame" if self.upgraded else "HTTP response"
            raise self._bad(f"the socket closed inside a {what}: {bytes(self._buffer[:200])!r}")

    @property
    def texts(self) -> list[str]:
        return [payload.decode() for opcode, payload in self.messages if opcode == TEXT]

    def _bad(self, problem: str) -> BadServerOutput:
        return BadServerOutput(f"{problem}; the server sent: {bytes(self.raw[-600:])!r}")

    def _take_answer(self) -> bool:
        head, sep, rest = bytes(self._buffer).partition(b"\r\n\r\n")
        if not sep:
            if len(self._buffer) > 65_536:
                raise self._bad("an HTTP response head over 64 KiB")
            return False
        lines = head.split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if len(parts) < 2 or parts[0] != b"HTTP/1.1" or not parts[1].isdigit():
            raise self._bad(f"bad status line {lines[0]!r}")
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, colon, value = line.partition(b":")
            if not colon:
                raise self._bad(f"bad header line {line!r}")
            headers[name.strip().lower().decode("latin-1")] = value.strip().decode("latin-1")
        status = int(parts[1])
        length = int(headers.get("content-length", "0"))
        if status == 101 or len(self.answers) in self.heads:
            length = 0
        if len(rest) < length:
            return False
        self.answers.append(HttpAnswer(status, headers, rest[:length]))
        self._buffer = bytearray(rest[length:])
        if status == 101:
            self.upgraded = True
        return True

    def _take_frame(self) -> bool:
        buffer = self._buffer
        if len(buffer) < 2:
            return False
        first, second = buffer[0], buffer[1]
        fin, rsv, opcode = bool(first & 0x80), first >> 4 & 0x7, first & 0xF
        if second & 0x80:
            raise self._bad("a masked server frame")
        if rsv:
            raise self._bad(f"reserved bits {rsv:03b} set in a server frame")
        if opcode not in OPCODES:
            raise self._bad(f"reserved opcode {opcode:#x} in a server frame")
        size, offset = second & 0x7F, 2
        if size == 126:
            if len(buffer) < 4:
                return False
            size, offset = struct.unpack("!H", buffer[2:4])[0], 4
            if size < 126:
                raise self._bad(f"length {size} in a 16-bit field (not minimal)")
        elif size == 127:
            if len(buffer) < 10:
                return False
            size, offset = struct.unpack("!Q", buffer[2:10])[0], 10
            if size < 65_536 or size >> 63:
                raise self._bad(f"length {size} in a 64-bit field (not minimal, or the top bit)")
        if opcode in CONTROL and (not fin or size > 125):
            raise self._bad(f"control frame {opcode:#x}: fin={fin}, {size} bytes")
        if len(buffer) < offset + size:
            return False
        payload = bytes(buffer[offset : offset + size])
        del buffer[: offset + size]
        self._on_frame(Frame(fin, opcode, payload))
        return True

    def _on_frame(self, received: Frame) -> None:
        self.frames.append(received)
        opcode = received.opcode
        if opcode == CLOSE:
            code = received.close_code
            if len(received.payload) == 1 or (code is not None and not valid_close_code(code)):
                raise self._bad(f"a bad Close payload {received.payload!r}")
            self._utf8(received.payload[2:], "close reason")
            self.close = received
            return
        if opcode in CONTROL:
            return
        if opcode == CONTINUATION and not self._fragments:
            raise self._bad("a continuation frame outside a fragmented message")
        if opcode != CONTINUATION and self._fragments:
            raise self._bad("a new data frame inside a fragmented message")
        self._fragments.append(received)
        if received.fin:
            kind = self._fragments[0].opcode
            payload = b"".join(part.payload for part in self._fragments)
            self._fragments.clear()
            if kind == TEXT:
                self._utf8(payload, "text message")
            self.messages.append((kind, payload))

    def _utf8(self, data: bytes, what: str) -> None:
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise self._bad(f"a {what} that is not UTF-8: {data[:100]!r}") from None


# -- A client over a plain socket ----------------------------------------------------------------


class RawClient:
    """One TCP connection to the gateway; every byte it receives goes through ``ServerOutput``.

    ``ended`` once the server closed the socket (EOF or a reset). Sends to a socket the server
    has closed are not errors (a server may close first): ``send`` returns False instead.
    """

    def __init__(self, port: int, host: str = "127.0.0.1", timeout: float = 10.0) -> None:
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.output = ServerOutput()
        self.ended = False
        self.reset = False
        self.closed = False
        """This side closed its socket (so nothing more can be observed)."""

    def __enter__(self) -> RawClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def send(self, data: bytes) -> bool:
        """Write all of ``data``; False when the server had already closed the connection."""
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            return False
        except TimeoutError:
            return False  # the server does not read (its window is full): as good as refused
        return True

    def read(self, timeout: float) -> int:
        """Receive what arrives within ``timeout`` seconds (less when the server closes)."""
        deadline = time.monotonic() + timeout
        received = 0
        while not self.ended and not self.closed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            readable, _, _ = select.select([self.sock], [], [], remaining)
            if not readable:
                break
            received += self._receive()
        return received

    def read_until(self, done: Callable[[ServerOutput], bool], timeout: float) -> bool:
        """Receive until ``done(output)`` holds (True) or the server closes or time runs out."""
        deadline = time.monotonic() + timeout
        while not done(self.output):
            remaining = deadline - time.monotonic()
            if self.ended or self.closed or remaining <= 0:
                return done(self.output)
            readable, _, _ = select.select([self.sock], [], [], min(remaining, 0.5))
            if readable:
                self._receive()
        return True

    def wait_ended(self, timeout: float) -> bool:
        """Receive until the server closes the socket; whether it did within ``timeout``."""
        return self.read_until(lambda _: self.ended, timeout)

    def upgrade(self, target: str = "/ws", timeout: float = 10.0) -> HttpAnswer:
        """Send an upgrade request and return the server's answer to it."""
        self.send(upgrade_request(target))
        if not self.read_until(lambda output: bool(output.answers), timeout):
            raise AssertionError(
                f"no answer to the upgrade within {timeout} s: {self.output.raw!r}"
            )
        return self.output.answers[-1]

    def first_text(self, timeout: float = 10.0) -> str:
        """The first text message of the connection (the gateway's ``connected`` or error)."""
        if not self.read_until(lambda output: bool(output.texts), timeout):
            raise AssertionError(f"no text frame within {timeout} s: {self.output.raw!r}")
        return self.output.texts[0]

    def shutdown_write(self) -> None:
        """Send FIN: the client will send nothing more but still reads."""
        try:
            self.sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # already reset by the server

    def abort(self) -> None:
        """Close with a reset (SO_LINGER 0), as a crashed client would."""
        if not self.closed:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close()

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.sock.close()

    def _receive(self) -> int:
        try:
            data = self.sock.recv(65_536)
        except (ConnectionResetError, TimeoutError):
            self.ended = self.reset = True
            return 0
        if not data:
            self.ended = True
            self.output.end()
            return 0
        self.output.feed(data)
        return len(data)


# -- Waiting, bounded ----------------------------------------------------------------------------


def poll_until(check: Callable[[], T], timeout: float, what: str, poll: float = 0.05) -> T:
    """Poll ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"not within {timeout:g} s: {what} (last: {value!r})")
        time.sleep(poll)


def fd_count(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def settled_fd_count(pid: int, quiet: float = 0.5, timeout: float = 10.0) -> int:
    """The process's descriptor count once it has not changed for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    count, since = fd_count(pid), time.monotonic()
    while time.monotonic() - since < quiet:
        assert time.monotonic() < deadline, f"the fd count of {pid} never settled"
        time.sleep(0.05)
        now = fd_count(pid)
        if now != count:
            count, since = now, time.monotonic()
    return count
