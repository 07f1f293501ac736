"""Publishing into a running gateway over HTTP (``REALTIME_BROKER=gateway``), with httpx.

For processes that have no Kafka and serve no gateway: a Django view on a laptop beside
``scripts/demo``, a worker on a host without Kafka credentials. Messages go to the gateway's
``POST /broadcast`` (``Authorization: Bearer REALTIME_API_KEY``), and the gateway publishes them
into its own broker; each acknowledgement resolves to the position the gateway answers (ADR 0024).

``publish`` never blocks: it appends to a bounded queue (``BrokerOverloaded`` beyond it) and
returns. One worker thread drains the queue: each request carries what waits, up to 100 messages
(the most one request may hold) and about 1 MB, so what is queued while a request is in flight
goes in the next. One request at a time, over one pooled connection, keeps the publish order.

The envelope travels whole, with its id and timestamp, so what clients receive carries the id of
the caller's ``Message``: a message sent twice (the outbox resends after an ambiguous failure) is
recognisable, and the browser client drops the repeat. This adapter never resends a request
itself: a failure is reported, and what was reported failed may still have reached the gateway.

Failures, each naming the gateway's URL: one that cannot be reached, does not answer within the
timeout, or answers 5xx fails the request's messages and every one queued behind them with
``BrokerUnavailable`` (waiting out the timeout once per queued request would make a burst fail
slowly); a refused API key (401, 403) is a ``ConfigurationError`` naming ``REALTIME_API_KEY``; a
refused message (400, 413) is an ``InvalidMessage`` with the gateway's words. A list the gateway
refuses is sent again one message at a time (the gateway publishes none of a list it refuses),
so one bad message fails alone, not with the up to 99 messages batched with it.
"""

from __future__ import annotations

import atexit
import logging
import threading
from collections import deque
from typing import Any

import httpx

from ..application.acknowledgement import Acknowledgement
from ..domain import Channel, Message, Position
from ..domain.errors import (
    BrokerOverloaded,
    BrokerUnavailable,
    ConfigurationError,
    InvalidMessage,
    InvalidPosition,
)
from . import forks

log = logging.getLogger("tidings.gateway_publisher")

MAX_QUEUED = 100_000
"""Messages accepted but not yet answered for (queued and in flight), at most."""

BATCH = 100
"""Messages per request: ``POST /broadcast`` takes lists of 1 to 100."""

BATCH_BYTES = 1_000_000
"""Bytes of envelopes per request, about: a gateway takes bodies of 1 MiB at least."""

_SHOWN = 300
"""Characters of an unexpected answer quoted in an error."""


class GatewayPublisher:
    """Implements ``Publisher`` into a running gateway's HTTP API (see the module doc).

    ``timeout`` bounds each phase of a request (connect, send, each read of the answer).
    ``transport`` is httpx's own hook for another transport; tests count requests with it.
    """

    name = "gateway"

    def __init__(
        self,
        url: str,
        api_key: str | None,
        *,
        timeout: float = 15.0,
        max_queued: int = MAX_QUEUED,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self._endpoint = f"{self.url}/broadcast"
        headers = {"content-type": "application/json"}
        if api_key:
            headers["authorization"] = f"Bearer {api_key}"
        self._client_settings: dict[str, Any] = {
            "headers": headers,
            "timeout": httpx.Timeout(timeout),
            "limits": httpx.Limits(max_connections=1, max_keepalive_connections=1),
            "transport": transport,
        }
        self._client = httpx.Client(**self._client_settings)
        self._max_queued = max_queued
        self._closed = False
        self._start_afresh()
        # The process-wide port is never closed by the application: deliver what is queued
        # when the interpreter exits (its worker is a daemon thread, still running then).
        atexit.register(self.close)
        forks.renew_after_fork(self)

    def _start_afresh(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)
        """Notified when a message is queued or the publisher closes (the worker waits)."""
        self._answered = threading.Condition(self._lock)
        """Notified when acknowledgements settle (``flush`` waits)."""
        self._queue: deque[Acknowledgement] = deque()
        self._sending: list[Acknowledgement] = []
        """The batch of the request in flight."""
        self._open = 0
        """Acknowledgements not yet settled: queued, or in the request in flight."""
        self._failing: BrokerUnavailable | None = None
        """Set while a failed request's messages and those queued behind them are settled:
        what is published meanwhile fails at once rather than overtake them."""
        self._worker: threading.Thread | None = None

    def renew_after_fork(self) -> None:
        """In a forked child (``forks``): a client, a worker and locks of its own; what the
        parent had queued or in flight fails here at once (the parent delivers it)."""
        forks.keep(self._client)
        inherited = [*self._sending, *self._queue]
        self._client = httpx.Client(**self._client_settings)
        self._start_afresh()
        forks.fail_inherited(inherited, BrokerUnavailable([self.url], forks.FORKED))

    # -- Publisher ---------------------------------------------------------------------------

    def publish(self, channel: Channel | str, message: Message) -> Acknowledgement:
        """Queue ``message`` for the gateway; see ``Publisher``."""
        target = Channel.of(channel)
        if target != message.channel:
            raise ValueError(
                f"publish on {target.name!r} of a message for {message.channel.name!r}"
            )
        with self._lock:
            if self._closed:
                return Acknowledgement.failed(
                    message, BrokerUnavailable([self.url], "the publisher is closed")
                )
            if self._failing is not None:
                return Acknowledgement.failed(message, self._failing)
            if self._open >= self._max_queued:
                return Acknowledgement.failed(
                    message,
                    BrokerOverloaded(
                        f"{self._open} messages await the gateway at {self.url}, the limit; "
                        f"message {message.id} on {target.name!r} was not published"
                    ),
                )
            ack = Acknowledgement(message)
            self._queue.append(ack)
            self._open += 1
            if self._worker is None:
                self._worker = threading.Thread(
                    target=self._work, name="tidings-gateway-publisher", daemon=True
                )
                self._worker.start()
            self._arrived.notify()
        return ack

    def flush(self, timeout: float | None = None) -> None:
        """Wait until everything published so far is answered for (at most ``timeout``)."""
        with self._lock:
            self._answered.wait_for(lambda: self._open == 0, timeout)

    def close(self) -> None:
        """Send what is queued (each request bounded by the timeout), then release the client."""
        atexit.unregister(self.close)
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._arrived.notify_all()
            worker = self._worker
        if worker is not None:
            worker.join()
        self._client.close()

    # -- The worker thread -------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._closed:
                    self._arrived.wait()
                if not self._queue:
                    return  # closed, and everything is answered for
                batch = self._sending = self._next_batch()
            try:
                self._send(batch)
            except Exception as exc:
                # A bug must not end this thread: what waits on it would never be answered.
                log.exception("publishing to the gateway at %s failed", self.url)
                self._fail_from_here(batch, BrokerUnavailable([self.url], repr(exc)))
            self._sending = []

    def _next_batch(self) -> list[Acknowledgement]:
        """What waits, oldest first, up to ``BATCH`` messages and ``BATCH_BYTES`` (at least one
        message, however large). Called with the lock held."""
        batch = [self._queue.popleft()]
        size = batch[0].message.size
        while self._queue and len(batch) < BATCH:
            size += self._queue[0].message.size + 1
            if size > BATCH_BYTES:
                break
            batch.append(self._queue.popleft())
        return batch

    def _send(self, batch: list[Acknowledgement]) -> bool:
        """POST ``batch`` and settle every message of it; False when the gateway was
        unavailable (the batch and everything queued behind it failed)."""
        body = b"[" + b",".join(ack.message.to_bytes() for ack in batch) + b"]"
        try:
            response = self._client.post(self._endpoint, content=body)
        except httpx.TimeoutException as exc:
            detail = f"no answer from POST {self._endpoint} in time ({type(exc).__name__})"
            self._fail_from_here(batch, BrokerUnavailable([self.url], detail))
            return False
        except httpx.HTTPError as exc:
            detail = f"POST {self._endpoint} failed: {exc or type(exc).__name__}"
            self._fail_from_here(batch, BrokerUnavailable([self.url], detail))
            return False
        status = response.status_code
        if status == 200:
            self._acknowledge(batch, response)
        elif status in (400, 413) and len(batch) > 1:
            return self._send_one_by_one(batch)
        elif status in (401, 403):
            self._fail(
                batch,
                ConfigurationError(
                    f"the gateway at {self.url} refused to publish ({status}: "
                    f"{_reason(response)}): REALTIME_API_KEY here must be the key the gateway "
                    "was started with"
                ),
            )
        elif status in (404, 405):
            self._fail(
                batch,
                ConfigurationError(
                    f"POST {self._endpoint} answered {status} ({_reason(response)}): "
                    "REALTIME_GATEWAY_URL must be the address of a tidings gateway "
                    "(like http://127.0.0.1:6001)"
                ),
            )
        elif status in (400, 413, 415, 422):
            self._fail(
                batch,
                InvalidMessage(
                    f"the gateway at {self.url} refused {_count(batch)} ({status}): "
                    f"{_reason(response)}"
                ),
            )
        else:
            detail = f"POST {self._endpoint} answered {status}: {_reason(response)}"
            self._fail_from_here(batch, BrokerUnavailable([self.url], detail))
            return False
        return True

    def _send_one_by_one(self, batch: list[Acknowledgement]) -> bool:
        """The gateway refused a list for one of its messages. It checks a whole list before
        it publishes any of it, so nothing of this one was published: each message goes again
        alone, and only what the gateway refuses fails, as each message stands alone on Kafka.
        Should the gateway become unavailable meanwhile, the rest fail with it."""
        for index, ack in enumerate(batch):
            if not self._send([ack]):
                error = ack.exception(0) or BrokerUnavailable([self.url], "unavailable")
                self._fail(batch[index + 1 :], error)
                return False
        return True

    def _acknowledge(self, batch: list[Acknowledgement], response: httpx.Response) -> None:
        """Settle each message with the position the gateway answered for it, in order."""
        try:
            answers = response.json()
            if not isinstance(answers, list) or len(answers) != len(batch):
                raise ValueError(f"expected a list of {len(batch)} answers")
            positions = [
                _position(answer, ack.message) for answer, ack in zip(answers, batch, strict=True)
            ]
        except (ValueError, InvalidPosition) as exc:
            detail = (
                f"POST {self._endpoint} answered 200 with what is not a tidings broadcast "
                f"answer ({exc}): {response.text[:_SHOWN]!r}"
            )
            self._fail(batch, BrokerUnavailable([self.url], detail))
            return
        for ack, position in zip(batch, positions, strict=True):
            ack.set_result(position)
        self._answered_for(len(batch))

    def _fail(self, batch: list[Acknowledgement], error: BaseException) -> None:
        for ack in batch:
            ack.set_exception(error)
        self._answered_for(len(batch))

    def _fail_from_here(self, batch: list[Acknowledgement], error: BrokerUnavailable) -> None:
        """The gateway is unavailable: fail this request and everything queued behind it, now,
        and what is published until they are all settled (so nothing overtakes them)."""
        with self._lock:
            self._failing = error
            behind = list(self._queue)
            self._queue.clear()
        try:
            for ack in (*batch, *behind):
                ack.set_exception(error)
        finally:
            with self._lock:
                self._failing = None
        self._answered_for(len(batch) + len(behind))

    def _answered_for(self, count: int) -> None:
        with self._lock:
            self._open -= count
            self._answered.notify_all()


def _position(answer: Any, message: Message) -> Position | None:
    """The position of one answer for ``message`` (None: the gateway's outbox took it)."""
    if not isinstance(answer, dict) or answer.get("id") != message.id:
        raise ValueError(f"the answer for message {message.id} is {answer!r}")
    position = answer.get("position")
    return None if position is None else Position.parse(position)


def _reason(response: httpx.Response) -> str:
    """The gateway's own words: its JSON ``error``, else the start of the body."""
    try:
        payload = response.json()
    except ValueError:
        payload = None
    if isinstance(payload, dict) and isinstance(payload.get("error"), str):
        return str(payload["error"])
    return response.text[:_SHOWN] or response.reason_phrase


def _count(batch: list[Acknowledgement]) -> str:
    if len(batch) == 1:
        message = batch[0].message
        return f"message {message.id} on {message.channel.name!r}"
    return f"a request of {len(batch)} messages"
