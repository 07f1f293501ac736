"""Webhooks: how the gateway tells an app's own server what happened on its channels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from ..domain.pusher.webhooks import WebhookEvent


class WebhookFailed(Exception):
    """The receiver did not take a webhook request (no answer, or a status other than 2xx)."""


class WebhookTransport(Protocol):
    """Sends one webhook request to the configured URL."""

    async def post(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Deliver ``body``; raises ``WebhookFailed`` saying why it was not taken."""
        ...

    async def aclose(self) -> None: ...


class Webhooks(Protocol):
    """Where events for webhooks go; ``emit`` never blocks and never fails (the events are
    queued, batched and sent by a task of their own)."""

    def emit(self, event: WebhookEvent) -> None: ...
