"""What the gateway counts, so an adapter can expose it (Prometheus text at ``/metrics``)."""

from __future__ import annotations

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

    def refused(self, code: int) -> None:
        """An error frame sent to a client, by protocol code."""
        ...

    def queue_overflow(self) -> None:
        """A client cut off because its queue filled."""
        ...

    def connection_refused(self, reason: str) -> None:
        """A connection turned away before it was served (``reason``: a short label such as
        ``max_connections``, ``max_connections_per_address`` or ``origin``)."""
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
