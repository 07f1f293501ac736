"""Publishing to Kafka with kafka-python: one shared producer, topics created on first use.

Only what the server publishes creates a topic. Client events are published with
``create_topic=False`` (``existing_topics_only``): into a topic that exists, else they fail with
``ChannelHasNoTopic``, so clients cannot fill the cluster with topics (ADR 0016).

Records are keyed by channel name, so one channel's messages share a partition and keep their
order; the producer runs with ``acks=all`` and idempotence, so an acknowledged message survives a
broker failure and a retry never duplicates it.

``publish`` never blocks its caller: a message for a topic already known goes straight to the
producer's buffer (kafka-python's ``send`` is thread-safe and only appends); anything that may
block (connecting, creating a topic) happens on this adapter's own worker thread. Every
acknowledgement settles within ``KAFKA_TIMEOUT``: with the position the broker gave the message, or
with ``BrokerUnavailable`` naming the brokers tried. In-flight messages are bounded
(``BrokerOverloaded`` beyond), so a dead broker cannot make memory grow without end.

Kafka's answers arrive on kafka-python's network thread, one per record. Settling takes no lock of
this adapter: the map of open acknowledgements is the in-flight count, and removing an entry from
it (one atomic ``dict.pop``) decides who settles, an answer or the watchdog, exactly once.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from ...application.acknowledgement import Acknowledgement
from ...domain import Channel, Message, Position
from ...domain.errors import BrokerOverloaded, BrokerUnavailable, ChannelHasNoTopic
from .. import forks
from .admin import KafkaAdmin
from .common import kafka_stream, unavailable
from .settings import KafkaClientConfig

log = logging.getLogger("tidings.kafka.publisher")

MAX_IN_FLIGHT = 100_000
"""Messages accepted but not yet acknowledged, at most."""

_STOP = object()
_SETTLED = object()

GRACE = 5.0
"""Seconds past the delivery timeout after which the watchdog fails an acknowledgement itself."""


def _close_quietly(producer: KafkaProducer) -> None:
    try:
        producer.close(timeout=0)
    except Exception as exc:
        log.debug("discarded producer did not close cleanly: %s", exc)


class _Answer:
    """Kafka's answer to one record, turned into its acknowledgement (on the network thread).

    One small object per record in flight, called on success and with ``failed`` on failure:
    cheaper for the garbage collector than a pair of closures or partials.
    """

    __slots__ = ("ack", "cluster_id", "producer", "publisher")

    def __init__(
        self,
        publisher: KafkaPublisher,
        ack: Acknowledgement,
        producer: KafkaProducer,
        cluster_id: str,
    ) -> None:
        self.publisher = publisher
        self.ack = ack
        self.producer = producer
        self.cluster_id = cluster_id

    def __call__(self, metadata: Any) -> None:
        stream = kafka_stream(self.cluster_id, metadata.topic, metadata.partition)
        self.publisher._settle(self.ack, Position(stream, metadata.offset))

    def failed(self, exc: BaseException) -> None:
        publisher = self.publisher
        publisher._discard(self.producer)
        publisher._settle(self.ack, error=unavailable(publisher.brokers, exc))


class KafkaPublisher:
    """Implements ``Publisher`` over Kafka (see the module doc)."""

    name = "kafka"

    def __init__(
        self,
        config: KafkaClientConfig,
        *,
        client_id: str,
        max_in_flight: int = MAX_IN_FLIGHT,
    ) -> None:
        self.brokers = config.broker_list
        self._strategy = config.strategy
        self._admin = KafkaAdmin.for_config(config, producer=True)
        self._config = config.producer(client_id)
        self._producer: KafkaProducer | None = None
        self._cluster_id: str | None = None
        self._known: set[str] = set()
        self._queued: dict[str, int] = {}
        """Messages per topic waiting on the worker; while any wait, later ones queue behind."""
        self._lock = threading.Lock()
        self._max_in_flight = max_in_flight
        self._work: queue.Queue[Any] = queue.Queue(maxsize=max_in_flight)
        self._thread: threading.Thread | None = None
        self._closed = False
        self._open: dict[Acknowledgement, float | None] = {}
        """Acknowledgements not yet settled, with the time by which they must be (None while
        queued on the worker). Added to under the lock; removed from by whoever settles."""
        self._delivery_timeout: float = self._config["delivery_timeout_ms"] / 1000
        self._start_watchdog()
        forks.renew_after_fork(self)

    def _start_watchdog(self) -> None:
        threading.Thread(target=self._watch, name="tidings-kafka-watchdog", daemon=True).start()

    def renew_after_fork(self) -> None:
        """In a forked child (``forks``): a producer, threads and locks of its own; what the
        parent had in flight fails here at once (the parent delivers it)."""
        forks.keep(self._producer, self._admin)
        if self._producer is not None:
            # kafka-python closes a producer at exit (an atexit hook), waiting for what it had
            # in flight; closed now, on a thread of its own, it neither delays the child's exit
            # nor blocks the child on a lock a vanished thread of the parent may hold.
            threading.Thread(
                target=_close_quietly,
                args=(self._producer,),
                name="tidings-kafka-inherited",
                daemon=True,
            ).start()
        inherited = list(self._open)
        self._admin = self._admin.renewed()
        self._producer = None
        self._cluster_id = None
        self._known = set()
        self._queued = {}
        self._lock = threading.Lock()
        self._work = queue.Queue(maxsize=self._max_in_flight)
        self._thread = None
        self._open = {}
        if not self._closed:
            self._start_watchdog()
        forks.fail_inherited(inherited, BrokerUnavailable(self.brokers, forks.FORKED))

    # -- Publisher ---------------------------------------------------------------------------

    def publish(
        self, channel: Channel | str, message: Message, *, create_topic: bool = True
    ) -> Acknowledgement:
        """Publish ``message``; see ``Publisher``. With ``create_topic=False`` the channel's topic
        must exist already: if it does not, the acknowledgement fails with ``ChannelHasNoTopic``
        and nothing is created (the check happens on the worker thread, never the caller's)."""
        target = Channel.of(channel)
        if target != message.channel:
            raise ValueError(
                f"publish on {target.name!r} of a message for {message.channel.name!r}"
            )
        topic = self._strategy.topic_for(target)
        ack = Acknowledgement(message)
        with self._lock:
            if self._closed:
                return Acknowledgement.failed(
                    message, BrokerUnavailable(self.brokers, "the publisher is closed")
                )
            if len(self._open) >= self._max_in_flight:
                return Acknowledgement.failed(
                    message,
                    BrokerOverloaded(
                        f"{len(self._open)} messages await Kafka's acknowledgement, the limit; "
                        f"message {message.id} on {target.name!r} was not published"
                    ),
                )
            direct = topic in self._known and not self._queued.get(topic)
            producer = self._producer if direct else None
            if producer is None:
                self._open[ack] = None
                self._queued[topic] = self._queued.get(topic, 0) + 1
                self._start_worker()
                self._work.put_nowait((topic, message, ack, create_topic))
                return ack
            self._open[ack] = self._deadline()
        self._send(producer, topic, message, ack)
        return ack

    def _deadline(self) -> float:
        """When a record sent now must be answered, or the watchdog fails it."""
        return time.monotonic() + self._delivery_timeout + GRACE

    def _send(
        self, producer: KafkaProducer, topic: str, message: Message, ack: Acknowledgement
    ) -> None:
        try:
            record = producer.send(
                topic, value=message.to_bytes(), key=message.channel.name.encode()
            )
        except (KafkaError, OSError) as exc:
            self._discard(producer)
            self._settle(ack, error=unavailable(self.brokers, exc))
            return
        answer = _Answer(self, ack, producer, self._cluster_id or "")
        record.add_callback(answer)
        record.add_errback(answer.failed)

    def _discard(self, producer: KafkaProducer) -> None:
        """Stop using a producer that failed a delivery; the next message builds a fresh one.

        After an expired batch kafka-python's idempotent producer drops its producer id and may
        wait for a new one forever; a fresh producer (or a fast failure) is better than a hang.
        Closing the old one with no grace fails whatever it still held.
        """
        with self._lock:
            if self._producer is not producer:
                return
            self._producer = None
            self._known.clear()
        threading.Thread(
            target=_close_quietly, args=(producer,), name="tidings-kafka-discard", daemon=True
        ).start()

    def _watch(self) -> None:
        """Fail acknowledgements that outlived the delivery timeout: a publish never hangs."""
        while not self._closed:
            time.sleep(1.0)
            now = time.monotonic()
            overdue = [
                ack
                for ack, deadline in self._open.copy().items()
                if deadline is not None and deadline < now
            ]
            if not overdue:
                continue
            producer = self._producer
            if producer is not None:
                self._discard(producer)
            for ack in overdue:
                self._settle(
                    ack,
                    error=BrokerUnavailable(
                        self.brokers, f"no acknowledgement within {self._delivery_timeout:g}s"
                    ),
                )

    def _settle(
        self,
        ack: Acknowledgement,
        position: Position | None = None,
        error: BaseException | None = None,
    ) -> None:
        if self._open.pop(ack, _SETTLED) is _SETTLED:
            return  # settled already (a late answer after the watchdog's verdict, say)
        if error is not None:
            ack.set_exception(error)
        else:
            ack.set_result(position)

    # -- The worker thread: everything that may block ------------------------------------------

    def _start_worker(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(
                target=self._work_loop, name="tidings-kafka-publisher", daemon=True
            )
            self._thread.start()

    def _work_loop(self) -> None:
        while True:
            item = self._work.get()
            if item is _STOP:
                return
            topic, message, ack, create_topic = item
            try:
                producer = self._ready_producer()
                if topic not in self._known:
                    if create_topic:
                        self._admin.ensure_topic(topic)
                    elif not self._admin.exists(topic):
                        with self._lock:
                            self._dequeued(topic)
                        self._settle(ack, error=ChannelHasNoTopic(message.channel.name, topic))
                        continue
                    # A topic just created may not be in the producer's metadata yet; sending
                    # before it is would fail the first message with a retriable error.
                    producer.partitions_for(topic)
            except (BrokerUnavailable, KafkaError, OSError) as exc:
                error = (
                    exc if isinstance(exc, BrokerUnavailable) else unavailable(self.brokers, exc)
                )
                self._fail_queued(error, item)
                continue
            except Exception as exc:
                # A bug must not end this thread: what waits on it would never be answered.
                log.exception("publisher worker failed on a message for %s", topic)
                self._fail_queued(unavailable(self.brokers, exc), item)
                continue
            self._open[ack] = self._deadline()
            self._send(producer, topic, message, ack)
            with self._lock:
                self._dequeued(topic)
                self._known.add(topic)

    def _dequeued(self, topic: str) -> None:
        left = self._queued.get(topic, 0) - 1
        if left > 0:
            self._queued[topic] = left
        else:
            self._queued.pop(topic, None)

    def _fail_queued(self, error: BrokerUnavailable, first: tuple[str, Message, Any, bool]) -> None:
        """Kafka is unreachable: fail this message and every one queued behind it, now.

        Waiting out the timeout once per queued message would make a burst fail slowly.
        """
        failed = [first]
        while True:
            try:
                item = self._work.get_nowait()
            except queue.Empty:
                break
            if item is _STOP:
                self._work.put(_STOP)
                break
            failed.append(item)
        for topic, _, ack, _ in failed:
            with self._lock:
                self._dequeued(topic)
            self._settle(ack, error=error)

    def _ready_producer(self) -> KafkaProducer:
        if self._producer is not None:
            return self._producer
        self._cluster_id = self._admin.cluster_id()
        producer = KafkaProducer(**self._config)
        with self._lock:
            self._producer = producer
        return producer

    def existing_topics_only(self) -> ExistingTopicsPublisher:
        """This publisher as a ``Publisher`` that never creates a topic (for client events)."""
        return ExistingTopicsPublisher(self)

    def flush(self, timeout: float | None = None) -> None:
        """Wait until every accepted message is acknowledged or failed (at most ``timeout``)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            producer = self._producer
            if producer is not None:
                try:
                    producer.flush(
                        timeout=0 if deadline is None else max(0.0, deadline - time.monotonic())
                    )
                except KafkaError:
                    pass  # what did not make it fails its own acknowledgement
            if not self._open:
                return
            if deadline is not None and time.monotonic() >= deadline:
                return
            time.sleep(0.005)

    def close(self) -> None:
        """Deliver what is in flight (bounded by the delivery timeout), then release the client."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
        if self._thread is not None:
            self._work.put(_STOP)
            self._thread.join()
        if self._producer is not None:
            try:
                self._producer.close(timeout=self._delivery_timeout)
            except KafkaError as exc:
                log.warning("producer did not close cleanly: %s", exc)
        self._admin.close()


class ExistingTopicsPublisher:
    """A ``Publisher`` over a ``KafkaPublisher`` that publishes only into topics that exist.

    It is how the gateway publishes client events (ADR 0016): a channel's topic is created by the
    server (its first broadcast, ``tidings kafka create-topics``, or the shared strategy's fixed
    topics), never by a client. It shares the producer; its owner closes that.
    """

    name = "kafka"

    def __init__(self, publisher: KafkaPublisher) -> None:
        self._publisher = publisher

    def publish(self, channel: Channel | str, message: Message) -> Acknowledgement:
        """Publish into the channel's existing topic, or fail with ``ChannelHasNoTopic``."""
        return self._publisher.publish(channel, message, create_topic=False)

    def flush(self, timeout: float | None = None) -> None:
        self._publisher.flush(timeout)

    def close(self) -> None:
        """Nothing of its own to release: the ``KafkaPublisher`` it wraps is closed by its owner."""
