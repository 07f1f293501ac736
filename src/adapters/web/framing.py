"""Server WebSocket frames as bytes, built once per text and shared by every connection.

A server's frames carry no mask and the gateway negotiates no extension, so a text frame's bytes
are the same for every connection: a broadcast to a thousand clients is framed once, not a
thousand times. The adapter's tests check these bytes against wsproto's own.
"""

from __future__ import annotations

import struct
from collections import OrderedDict


class FrameCache:
    """Recently framed texts, bounded by their total size (oldest dropped first)."""

    def __init__(self, max_bytes: int) -> None:
        self._frames: OrderedDict[str, bytes] = OrderedDict()
        self._bytes = 0
        self._max_bytes = max_bytes

    def get(self, text: str) -> bytes:
        framed = self._frames.get(text)
        if framed is None:
            framed = frame_text(text)
            if len(framed) <= self._max_bytes // 16:
                self._frames[text] = framed
                self._bytes += len(framed) + len(text)
                while self._bytes > self._max_bytes:
                    old_text, old = self._frames.popitem(last=False)
                    self._bytes -= len(old) + len(old_text)
        return framed


text_frame = FrameCache(max_bytes=1024 * 1024).get
"""``text`` as one unmasked, final WebSocket text frame (RFC 6455 §5.2), from a 1 MiB cache of
recent frames (the cache's own method: it runs once per delivery, so it is called directly)."""


def frame_text(text: str) -> bytes:
    """``text`` framed now, without the cache."""
    payload = text.encode()
    size = len(payload)
    if size < 126:
        head = bytes((0x81, size))
    elif size < 65_536:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + payload
