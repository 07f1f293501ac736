"""Webhooks out of the hot path: a bounded queue, batches, retries with back-off, own task.

``emit`` appends to a queue and returns; ``run`` (a task of the gateway's nursery) takes up to
``batch_size`` events at a time, signs them as one request (``domain.pusher.webhooks``) and sends
it through the ``WebhookTransport``. A request that fails is sent again after an exponential
back-off with jitter, with a fresh ``time_ms`` (receivers refuse old ones), until it is taken.
The queue holds at most ``max_queued`` events besides the batch in flight: while the receiver is
down, the oldest go first,
counted in ``dropped`` and logged (at the first and every thousandth), so memory stays bounded
and delivery to clients never waits for a webhook.
"""

from __future__ import annotations

import collections
import logging
import random
import time
from collections.abc import Callable

import trio

from ...domain.pusher import webhooks as hooks
from ...domain.pusher.webhooks import WebhookEvent
from ...ports import WebhookFailed, WebhookTransport

log = logging.getLogger("tidings.webhooks")


class WebhookQueue:
    """Implements ``Webhooks``: see the module doc."""

    def __init__(
        self,
        transport: WebhookTransport,
        *,
        key: str,
        secret: str,
        max_queued: int = 10_000,
        batch_size: int = 100,
        min_delay: float = 0.5,
        max_delay: float = 30.0,
        clock: Callable[[], float] = time.time,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self._transport = transport
        self._key = key
        self._secret = secret
        self._queue: collections.deque[WebhookEvent] = collections.deque(maxlen=max_queued)
        self._batch_size = batch_size
        self._min_delay = min_delay
        self._max_delay = max_delay
        self._clock = clock
        self._rand = rand
        self._wake = trio.Event()
        self._idle = trio.Event()
        self._idle.set()
        self.dropped = 0
        """Events dropped, oldest first, because the queue was full."""
        self.sent = 0
        """Events the receiver took."""
        self.failures = 0
        """Requests that failed (each is retried)."""

    def emit(self, event: WebhookEvent) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "webhook queue full (%d events): dropped %d oldest event(s) so far; "
                    "is the webhook receiver down?",
                    self._queue.maxlen,
                    self.dropped,
                )
        self._queue.append(event)
        if self._idle.is_set():
            self._idle = trio.Event()
        self._wake.set()

    async def flush(self) -> None:
        """Return once every queued event was taken (bound it with a timeout: a receiver that
        is down keeps it waiting)."""
        await self._idle.wait()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def run(self) -> None:
        """Send what is queued until cancelled."""
        try:
            while True:
                await self._wake.wait()
                self._wake = trio.Event()
                while self._queue:
                    await self._send_batch()
                self._idle.set()
        finally:
            with trio.CancelScope(shield=True):
                await self._transport.aclose()

    async def _send_batch(self) -> None:
        """Take up to ``batch_size`` events off the queue and send them until they are taken
        (the batch in flight is the only memory beyond the queue's bound)."""
        batch = [self._queue.popleft() for _ in range(min(self._batch_size, len(self._queue)))]
        failures = 0
        while True:
            body = hooks.body(batch, int(self._clock() * 1000))
            try:
                await self._transport.post(body, hooks.headers(self._key, self._secret, body))
            except WebhookFailed as exc:
                self.failures += 1
                delay = min(self._max_delay, self._min_delay * 2 ** min(failures, 30))
                delay = delay / 2 + self._rand() * delay / 2
                failures += 1
                log.warning(
                    "webhook of %d event(s) not taken (%s); retrying in %.1f s",
                    len(batch),
                    exc,
                    delay,
                )
                await trio.sleep(delay)
                continue
            self.sent += len(batch)
            return
