"""Consume throughput from Kafka over a pre-filled topic: one system, ``--count`` messages.

    python -m bench.workers.kafka_consume fill --count M --channel C --topic T --brokers B
    python -m bench.workers.kafka_consume SYSTEM --count M --channel C --topic T --group G ...

Systems:

* ``tidings``: the gateway's consume path without sockets: a ``KafkaFeed`` (the subscriber the
  composition root builds, ``Container.for_settings(...).subscriber().open_feed(...)``, batches
  of 500 like a gateway) handing each batch to ``Hub.dispatch`` (no local subscribers) and
  committing it, as ``Gateway`` does.
* ``kafka-python-feed``: the raw consumer doing what tidings' feed does, like for like: polls of
  up to 2,000 records (the feed's ``batch_size`` 500 x ``POLL_BATCHES`` 4), each value decoded
  with orjson and its ``channel`` checked to be a string (the feed decodes an envelope only up
  to its channel, then a memo look-up), an asynchronous commit after each poll (the feed commits
  without waiting, one commit in flight).
* ``kafka-python-plain``: the raw consumer as a plain application uses it: kafka-python's
  default poll size (``max_poll_records`` 500), ``json.loads`` of every value, a synchronous
  commit after each poll.
* ``broadcaster``: encode/broadcaster's Kafka backend, ``subscribe`` and iterate, ``json.loads``
  of each message. Its consumer has no group and starts at the end of the topic, so the worker
  seeks it to the beginning once its partition is assigned and placed (the one change made to
  the peer).

The rate is timed from the first message received to the last one handed on; ``per_cpu_s`` is
messages per CPU-second of the process (all its threads) over the same span, a figure other
processes on the machine disturb less; ``total_seconds`` also counts connecting and joining the
group.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from functools import partial
from typing import Any

from . import EVENT, data, report


class Clock:
    """Wall clock and this process's CPU time (every thread's) from the first message on."""

    def __init__(self) -> None:
        self.opened = time.perf_counter()
        self.first: float | None = None
        self.first_cpu = 0.0

    def seen(self) -> None:
        if self.first is None:
            self.first = time.perf_counter()
            self.first_cpu = time.process_time()

    def summary(self, system: str, count: int) -> dict[str, Any]:
        end = time.perf_counter()
        seconds = end - (self.first or end)
        cpu = time.process_time() - self.first_cpu if self.first is not None else 0.0
        return {"system": system, "messages": count, "seconds": seconds,
                "rate": count / seconds if seconds else 0.0, "total_seconds": end - self.opened,
                "cpu_seconds": cpu, "per_cpu_s": count / cpu if cpu else 0.0}


def fill(args: argparse.Namespace) -> dict[str, Any]:
    from kafka import KafkaProducer

    from tidings import Message

    producer = KafkaProducer(
        bootstrap_servers=args.brokers.split(","), acks="all", linger_ms=20,
        batch_size=262_144,
    )
    key = args.channel.encode()
    for seq in range(args.count):
        value = Message.event(args.channel, EVENT, data(seq, args.channel)).to_bytes()
        producer.send(args.topic, value, key=key)
    producer.flush(120)
    producer.close()
    return {"system": "fill", "messages": args.count}


def consume_tidings(args: argparse.Namespace) -> dict[str, Any]:
    import trio

    from tidings.application.gateway.hub import Hub
    from tidings.application.gateway.presence import PresenceTracker
    from tidings.bootstrap import Container
    from tidings.config import Settings
    from tidings.entrypoints.runtime import tune_interpreter
    from tidings.ports import FeedOptions, GroupMode

    settings = Settings.load(env_file=None, kafka_brokers=args.brokers,
                             kafka_topic_prefix=args.prefix, realtime_broker="kafka")
    # As a gateway reads: every channel of the prefix (here one topic), with the gateway's
    # interpreter settings (garbage collector and its clock, switch interval).
    options = FeedOptions(
        channels=None, group_mode=GroupMode.SHARED, batch_size=500,
        timeout=0.5, group=args.group, node_id="bench", start_at_end=False,
    )
    container = Container.for_settings(settings)
    hub = Hub(PresenceTracker("bench", lambda channel, part: None))
    clock = Clock()
    count = 0

    async def consume() -> None:
        nonlocal count
        async with trio.open_nursery() as nursery:
            tune_interpreter(nursery)
            async with container.subscriber().open_feed(options) as feed:
                async for batch in feed.batches():
                    if batch:
                        clock.seen()
                        hub.dispatch(batch)
                        count += len(batch)
                        await feed.commit()
                    if count >= args.count:
                        break
            nursery.cancel_scope.cancel()

    try:
        trio.run(consume)
    finally:
        container.shutdown_resources()
    return clock.summary("tidings", count)


FEED_POLL_RECORDS = 2_000
"""What tidings' feed asks of a poll: its batch size (500) x ``POLL_BATCHES`` (4)."""


def consume_kafka_python(args: argparse.Namespace, *, like_feed: bool) -> dict[str, Any]:
    from kafka import KafkaConsumer

    system = "kafka-python-feed" if like_feed else "kafka-python-plain"
    clock = Clock()
    options: dict[str, Any] = {"max_poll_records": FEED_POLL_RECORDS} if like_feed else {}
    consumer = KafkaConsumer(
        args.topic, bootstrap_servers=args.brokers.split(","), group_id=args.group,
        auto_offset_reset="earliest", enable_auto_commit=False, **options,
    )
    count = 0
    if like_feed:
        import orjson

        while count < args.count:
            records = consumer.poll(timeout_ms=500)
            if not records:
                continue
            clock.seen()
            for batch in records.values():
                for record in batch:
                    envelope = orjson.loads(record.value)
                    if isinstance(envelope, dict) and isinstance(envelope.get("channel"), str):
                        count += 1
            consumer.commit_async()
    else:
        while count < args.count:
            records = consumer.poll(timeout_ms=500)
            if not records:
                continue
            clock.seen()
            for batch in records.values():
                for record in batch:
                    json.loads(record.value)
                    count += 1
            consumer.commit()
    summary = clock.summary(system, count)
    consumer.close(autocommit=False)
    return summary


def consume_broadcaster(args: argparse.Namespace) -> dict[str, Any]:
    from broadcaster import Broadcast

    clock = Clock()
    count = 0

    async def consume() -> None:
        nonlocal count
        broadcast = Broadcast(f"kafka://{args.brokers.split(',')[0]}")
        async with broadcast, broadcast.subscribe(args.topic) as subscriber:
            consumer = broadcast._backend._consumer  # type: ignore[attr-defined]
            for partition in consumer.assignment():
                await consumer.position(partition)  # let its reset to "latest" finish first
            await consumer.seek_to_beginning()
            async for event in subscriber:  # type: ignore[union-attr]
                assert event is not None
                clock.seen()
                json.loads(event.message)
                count += 1
                if count >= args.count:
                    break

    asyncio.run(consume())
    return clock.summary("broadcaster", count)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kafka consume throughput of one system.")
    parser.add_argument("system", choices=["fill", "tidings", "kafka-python-feed",
                                           "kafka-python-plain", "broadcaster"])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--topic", required=True, help="the channel's tidings topic")
    parser.add_argument("--prefix", default="realtime", help="KAFKA_TOPIC_PREFIX (tidings)")
    parser.add_argument("--group", default="bench")
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    args = parser.parse_args(argv)
    run = {"fill": fill, "tidings": consume_tidings,
           "kafka-python-feed": partial(consume_kafka_python, like_feed=True),
           "kafka-python-plain": partial(consume_kafka_python, like_feed=False),
           "broadcaster": consume_broadcaster}[args.system]
    report(run(args))


if __name__ == "__main__":
    main()
    os._exit(0)
