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

    def render(self) -> tuple[bytes, str]:
        """The exposition body and its content type."""
        ...
