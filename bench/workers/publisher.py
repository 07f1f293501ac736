"""The fan-out publisher: sends benchmark messages to one system, at a fixed rate or flat out.

    python -m bench.workers.publisher KIND --count M [--rate R] [--max-seconds T] --channel C ...

Kinds, one per system under test:

* ``tidings-http``: ``POST /broadcast`` on the gateway (memory broker), lists of up to
  ``--per-request`` (100), or one message object per request with ``--per-request 1``.
* ``tidings-kafka``: ``tidings.broadcast_nowait`` (configured by the environment), then a flush.
* ``socketio-http``: ``POST /emit`` on the in-process python-socketio peer, lists of up to 100.
* ``socketio-kafka``: ``socketio.KafkaManager(..., write_only=True).emit`` (``--parallel``
  managers in threads, since each emit waits for Kafka).
* ``centrifugo-http``: Centrifugo's HTTP API (``X-API-Key``): ``POST /api/publish`` with one
  message per request, ``POST /api/batch`` with a list of ``publish`` commands otherwise.

``--parallel`` sending threads (each with its own HTTP connection, for the HTTP kinds) share the
count. Every message's data is ``message(run, worker, seq, channel)``: ``run`` tells this
process's messages from any other's, ``worker`` is the sending thread, ``seq`` that thread's
count of messages to that channel (0, 1, ...): the load generator checks that every client gets
each of them once, in order. The report's ``per_channel`` says how many messages each channel was
sent (every thread's), what each client of that channel must have received.

Before timing, one untimed message without ``ts`` goes to each of a few channels: connections
open, producers connected, topics known. The channel is ``--channel``, where ``{i}`` becomes a
random user in ``[0, --users)``. A full queue on the other side (HTTP 503, ``BrokerOverloaded``)
is waited out and retried: the publisher pushes as hard as the system takes. Prints
``{"sent", "seconds", "rate", "errors", "retries", "run", "per_channel"}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import threading
import time
import types
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlsplit

from . import BODY, EVENT, report, warn

MAX_BATCH = 100
MAX_WORKERS = 16
"""Sending threads the load generator's check tells apart (its maxWorkers)."""

Item = tuple[int, int, str]
"""(worker, seq, channel) of one message."""
Sender = Callable[[list[Item]], None]
"""Sends one batch of messages."""
Warmer = Callable[[list[str]], None]
"""Sends one untimed message to each channel: connections open, topics known, before timing."""

WARM = {"warmup": True}
"""The data of warm-up messages: no ``ts``, so the load generator does not count them."""
WARM_CHANNELS = 64


RUN = time.time_ns() // 1000
"""This process's run: microseconds since the epoch, so a later publisher has a larger one."""


def message(worker: int, seq: int, channel: str) -> dict[str, Any]:
    """The data of a benchmark message, about 190 bytes of JSON: ``ts`` (the send time, ns since
    the epoch) first, then ``run``, ``worker``, ``seq``, in that order (the load generator reads
    them in that order without decoding the rest)."""
    return {"ts": time.time_ns(), "run": RUN, "worker": worker, "seq": seq, "channel": channel,
            "body": BODY}


class Counters:
    def __init__(self) -> None:
        self.sent = 0
        self.errors = 0
        self.retries = 0
        self.lock = threading.Lock()

    def add(self, sent: int = 0, errors: int = 0, retries: int = 0) -> None:
        with self.lock:
            self.sent += sent
            self.errors += errors
            self.retries += retries


def paced(rate: float, count: int, max_seconds: float, max_batch: int) -> Iterator[int]:
    """Batch sizes that keep to ``rate`` messages/s (0: as fast as taken), ``count`` in all."""
    start = time.monotonic()
    sent = 0
    while sent < count:
        elapsed = time.monotonic() - start
        if elapsed > max_seconds:
            return
        if rate > 0:
            due = min(count, int(elapsed * rate) + 1)
            if due <= sent:
                time.sleep(max(0.0, min(0.01, sent / rate - elapsed)))
                continue
            size = min(max_batch, due - sent)
        else:
            size = min(max_batch, count - sent)
        yield size
        sent += size


class Channels:
    def __init__(self, template: str, users: int, seed: int) -> None:
        self.template = template
        self.users = users
        self.random = random.Random(seed)

    def next(self) -> str:
        if "{i}" not in self.template:
            return self.template
        return self.template.replace("{i}", str(self.random.randrange(self.users)))


class HttpSender:
    """POSTs JSON on one keep-alive connection; 503 means "full, retry shortly"."""

    def __init__(
        self, url: str, path: str, key: str | None, counters: Counters, *,
        key_header: str | None = None,
    ) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(
            parts.hostname or "127.0.0.1", parts.port, timeout=600
        )
        self.path = path
        self.headers = {"content-type": "application/json"}
        if key and key_header:
            self.headers[key_header] = key
        elif key:
            self.headers["authorization"] = f"Bearer {key}"
        self.counters = counters

    def post(
        self, payload: object, messages: int, *, count: bool = True, path: str | None = None,
        refused: Callable[[bytes], bool] = lambda text: False,
    ) -> None:
        """POST ``payload`` (``messages`` messages); ``refused`` finds errors in a 200 answer."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        while True:
            self.connection.request("POST", path or self.path, body, self.headers)
            response = self.connection.getresponse()
            text = response.read()
            if response.status == 200 and not refused(text):
                if count:
                    self.counters.add(sent=messages)
                return
            if response.status == 503:
                self.counters.add(retries=1)
                time.sleep(0.005)
                continue
            self.counters.add(errors=messages)
            warn(f"publisher: {response.status} {text[:300]!r}")
            return


SenderFactory = Callable[[], tuple[Sender, Warmer]]
"""Makes one sending thread's sender (its own connection) and warmer."""


def per_thread(factory: SenderFactory) -> tuple[Sender, Warmer]:
    """A sender and warmer that use one connection per thread, made on first use."""
    local = threading.local()

    def mine() -> tuple[Sender, Warmer]:
        pair: tuple[Sender, Warmer] | None = getattr(local, "pair", None)
        if pair is None:
            pair = local.pair = factory()
        return pair

    return (lambda batch: mine()[0](batch)), (lambda channels: mine()[1](channels))


def tidings_http(args: argparse.Namespace, counters: Counters) -> tuple[Sender, Warmer]:
    def make() -> tuple[Sender, Warmer]:
        sender = HttpSender(args.url, "/broadcast", args.key, counters)

        def send(batch: list[Item]) -> None:
            items = [{"channel": channel, "event": EVENT, "data": message(worker, seq, channel)}
                     for worker, seq, channel in batch]
            # One message per request is sent as one object, as an application sends one.
            sender.post(items[0] if args.per_request == 1 else items, len(items))

        def warm(channels: list[str]) -> None:
            sender.post([{"channel": channel, "event": EVENT, "data": WARM}
                         for channel in channels], len(channels), count=False)

        return send, warm

    return per_thread(make)


def socketio_http(args: argparse.Namespace, counters: Counters) -> tuple[Sender, Warmer]:
    def make() -> tuple[Sender, Warmer]:
        sender = HttpSender(args.url, "/emit", None, counters)

        def send(batch: list[Item]) -> None:
            sender.post([{"room": channel, "data": message(worker, seq, channel)}
                         for worker, seq, channel in batch], len(batch))

        def warm(channels: list[str]) -> None:
            sender.post([{"room": channel, "data": WARM} for channel in channels],
                        len(channels), count=False)

        return send, warm

    return per_thread(make)


def _centrifugo_refused(text: bytes) -> bool:
    """Centrifugo answers 200 with ``{"error": ...}`` (or one per batch reply) when it refuses."""
    return b'"error"' in text


def centrifugo_http(args: argparse.Namespace, counters: Counters) -> tuple[Sender, Warmer]:
    """Centrifugo's HTTP API: ``/api/publish`` per message, ``/api/batch`` for lists (its
    commands run one after another, in order)."""

    def make() -> tuple[Sender, Warmer]:
        sender = HttpSender(args.url, "/api/publish", args.key, counters, key_header="X-API-Key")

        def post(publishes: list[dict[str, Any]], count: bool) -> None:
            if len(publishes) == 1:
                sender.post(publishes[0], 1, count=count, refused=_centrifugo_refused)
            else:
                sender.post({"commands": [{"publish": p} for p in publishes]}, len(publishes),
                            count=count, path="/api/batch", refused=_centrifugo_refused)

        def send(batch: list[Item]) -> None:
            post([{"channel": channel, "data": message(worker, seq, channel)}
                  for worker, seq, channel in batch], True)

        def warm(channels: list[str]) -> None:
            post([{"channel": channel, "data": WARM} for channel in channels], False)

        return send, warm

    return per_thread(make)


class TidingsKafka:
    """``broadcast_nowait`` per message; results are checked after the final flush."""

    def __init__(self, counters: Counters) -> None:
        import tidings
        from tidings import BrokerOverloaded

        self.realtime = tidings.realtime()
        self.overloaded = BrokerOverloaded
        self.counters = counters
        self.pending: list[Any] = []

    def warm(self, channels: list[str]) -> None:
        """Connect the producer and learn the topics before anything is timed."""
        for channel in channels:
            self.realtime.broadcast(channel, EVENT, WARM)

    def send(self, batch: list[Item]) -> None:
        for worker, seq, channel in batch:
            while True:
                pending = self.realtime.broadcast_nowait(channel, EVENT,
                                                         message(worker, seq, channel))
                if pending.done() and isinstance(_exception(pending), self.overloaded):
                    self.counters.add(retries=1)
                    time.sleep(0.005)
                    continue
                self.pending.append(pending)
                break

    def finish(self) -> None:
        self.realtime.broker().flush(60)
        failed = sum(1 for pending in self.pending if _exception(pending) is not None)
        self.counters.add(sent=len(self.pending) - failed, errors=failed)
        if failed:
            warn(f"publisher: {failed} broadcasts failed, e.g. {_first_error(self.pending)}")


def _exception(pending: Any) -> BaseException | None:
    if not pending.done():
        return TimeoutError("not acknowledged")
    try:
        pending.result(0)
    except Exception as exc:
        return exc
    return None


def _first_error(pendings: list[Any]) -> str:
    for pending in pendings:
        error = _exception(pending)
        if error is not None:
            return repr(error)
    return ""


def _bytes_json() -> types.SimpleNamespace:
    """A JSON "module" whose dumps returns bytes, for KafkaManager's documented ``json=`` option.

    python-socketio's KafkaManager hands kafka-python the str from ``json.dumps``; kafka-python 3
    refuses values that are not bytes. This is the smallest change that lets it publish at all.
    """
    return types.SimpleNamespace(
        dumps=lambda obj, **kwargs: json.dumps(obj, **kwargs).encode(), loads=json.loads
    )


def socketio_kafka(args: argparse.Namespace, counters: Counters) -> tuple[Sender, Warmer]:
    import socketio

    managers: list[Any] = []
    local = threading.local()

    def warm(channels: list[str]) -> None:
        """One connected manager per sending thread, each warmed up, before anything is timed."""
        for _ in range(max(1, args.parallel)):
            manager = socketio.KafkaManager(
                args.kafka, channel=args.topic, write_only=True, json=_bytes_json()
            )
            for channel in channels:
                manager.emit(EVENT, WARM, room=channel, namespace="/")
            managers.append(manager)

    def send(batch: list[Item]) -> None:
        manager = getattr(local, "manager", None)
        if manager is None:
            manager = local.manager = managers.pop()
        for worker, seq, channel in batch:
            try:
                manager.emit(EVENT, message(worker, seq, channel), room=channel, namespace="/")
                counters.add(sent=1)
            except Exception as exc:
                counters.add(errors=1)
                warn(f"publisher: emit failed: {exc!r}")

    return send, warm


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Publish benchmark messages to one system.")
    parser.add_argument(
        "kind",
        choices=["tidings-http", "tidings-kafka", "socketio-http", "socketio-kafka",
                 "centrifugo-http"],
    )
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--rate", type=float, default=0, help="messages/s; 0 = as fast as taken")
    parser.add_argument("--max-seconds", type=float, default=3600)
    parser.add_argument("--channel", default="bench.fanout", help="{i} = a random user")
    parser.add_argument("--users", type=int, default=1)
    parser.add_argument("--url", help="gateway / server base URL (HTTP kinds)")
    parser.add_argument("--key", help="REALTIME_API_KEY (tidings-http), the HTTP API key "
                        "(centrifugo-http)")
    parser.add_argument("--per-request", type=int, default=MAX_BATCH,
                        help="messages per HTTP request, 1 to 100 (HTTP kinds)")
    parser.add_argument("--kafka", help="kafka://HOST:PORT (socketio-kafka)")
    parser.add_argument("--topic", help="KafkaManager channel (socketio-kafka)")
    parser.add_argument("--parallel", type=int, default=1,
                        help=f"sending threads, at most {MAX_WORKERS} (HTTP kinds and "
                        "socketio-kafka)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    if not 1 <= args.per_request <= MAX_BATCH:
        parser.error(f"--per-request must be 1 to {MAX_BATCH}, not {args.per_request}")
    if not 1 <= args.parallel <= MAX_WORKERS:
        parser.error(f"--parallel must be 1 to {MAX_WORKERS}, not {args.parallel}")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    counters = Counters()
    finish: Callable[[], None] = lambda: None  # noqa: E731
    if args.kind == "tidings-http":
        send, warm = tidings_http(args, counters)
    elif args.kind == "socketio-http":
        send, warm = socketio_http(args, counters)
    elif args.kind == "centrifugo-http":
        send, warm = centrifugo_http(args, counters)
    elif args.kind == "tidings-kafka":
        publisher = TidingsKafka(counters)
        send, warm, finish = publisher.send, publisher.warm, publisher.finish
    else:
        send, warm = socketio_kafka(args, counters)
    picker = Channels(args.channel, args.users, args.seed + 7)
    # Shared-strategy topics are learnt per topic: tidings' Kafka publisher warms 64 channels.
    warm_channels = WARM_CHANNELS if args.kind == "tidings-kafka" else 8
    warm(sorted({picker.next() for _ in range(warm_channels)}))
    max_batch = args.per_request if args.kind.endswith("http") else 1
    threads = 1 if args.kind == "tidings-kafka" else args.parallel
    per_thread_counts = [Counter[str]() for _ in range(threads)]
    start = time.monotonic()

    def worker(index: int) -> None:
        channels = Channels(args.channel, args.users, args.seed * 1000 + index)
        counts = per_thread_counts[index]
        share = args.count // threads + (1 if index < args.count % threads else 0)
        for size in paced(args.rate / threads, share, args.max_seconds, max_batch):
            batch: list[Item] = []
            for _ in range(size):
                channel = channels.next()
                batch.append((index, counts[channel], channel))
                counts[channel] += 1
            send(batch)

    if threads == 1:
        worker(0)
    else:
        pool = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(threads)]
        for thread in pool:
            thread.start()
        for thread in pool:
            thread.join()
    finish()
    seconds = time.monotonic() - start
    per_channel: Counter[str] = Counter()
    for counts in per_thread_counts:
        per_channel.update(counts)
    report({
        "sent": counters.sent, "errors": counters.errors, "retries": counters.retries,
        "seconds": seconds, "rate": counters.sent / seconds if seconds else 0.0,
        "run": RUN, "threads": threads, "per_request": max_batch,
        "per_channel": dict(per_channel),
    })


if __name__ == "__main__":
    main()
    os._exit(0)  # Kafka clients' threads need not linger: everything was flushed and reported
