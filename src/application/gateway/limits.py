"""The gateway's per-connection limits, named, with safe defaults; every one is configurable.

The other two limits belong elsewhere: the size of a message (``REALTIME_MAX_MESSAGE_BYTES``) is
checked by ``RealtimeService`` for every publisher, and the handshake timeout by the web server.
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Limits:
    max_frame_bytes: int = 65_536
    """A client frame over this gets error 413; one over four times it closes the connection."""
    max_channels: int = 100
    """Channels one connection may hold; one more gets error 429."""
    rate: float = 50.0
    """Frames per second a client may send on average (a token bucket) ..."""
    burst: int = 100
    """... and in a burst. Frames over it get error 429; a client that keeps going is cut."""
    presence_rate: float = 1.0
    """Presence channels a connection may join per second on average ..."""
    presence_burst: int = 10
    """... and at once. Joins over it get error 429: each join and leave goes to every member."""
    queue_size: int = 1_000
    """Frames queued for a client before it is cut off as a slow consumer (close 4008)."""
    idle_timeout: float = 120.0
    """Seconds without a frame from a client (clients ping) before it is disconnected."""
    flood_refusals: int = 200
    """Rate-limit refusals a client may run up (they refill at a quarter of ``rate``); one more
    and it is disconnected (close 4029)."""
