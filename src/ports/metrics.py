"""What the gateway counts, so an adapter can expose it (Prometheus text at ``/metrics``)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol


class GatewayMetrics(Protocol):
    def connection_opened(self) -> None: ...

    def connection_closed(self) -> None: ...

    def subscribed(self) -> None: ...

    def unsubscribed(self, count: int = 1) -> None: ...

    def messages_in(self, count: int) -> None:
        """Messages received from the broker."""
        ...

    def messages_out(self, count: int) -> None:
        """Frames queued to clients."""
        ...

    def sent(self, published_at: Sequence[float], now: float) -> None:
        """Messages of one broker batch handed to their clients' sockets at ``now`` (written, or
        queued behind a full socket), given by their envelopes' ``timestamp`` (Unix seconds):
        the publish-to-send latency, observed once per message, not per recipient."""
        ...

    def broker_status(self, connected: bool, lag: int | None) -> None:
        """The broker feed's state as last seen (``lag``: messages not yet handed over; None
        when the feed does not know it, and then the last known figure stays)."""
        ...

    def disconnected(self, code: int) -> None:
        """A client connection ended, with the WebSocket close code it was (or would have
        been, for an event stream) closed with: 1000, 1001, 1006, 1008, 1011, 4001, 4008..."""
        ...

    def refused(self, code: int) -> None:
        """An error frame sent to a client (or an event-stream request refused), by code."""
        ...

    def queue_overflow(self) -> None:
        """A client cut off because its queue filled."""
        ...

    def connection_refused(self, reason: str) -> None:
        """A connection turned away before it was served (``reason``: a short label such as
        ``max_connections``, ``max_connections_per_address``, ``origin`` or ``bad_request``)."""
        ...

    def connection_failed(self) -> None:
        """A connection closed with 1011 because serving it raised an unexpected error."""
        ...

    def records_dropped(self, reason: str, count: int = 1) -> None:
        """Broker records not delivered to anyone (``reason``: e.g. ``wrong_topic``)."""
        ...

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        ...
