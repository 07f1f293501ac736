"""Publish throughput to Kafka: one system, ``--count`` messages, timed after a warm-up message.

    python -m bench.workers.kafka_publish SYSTEM --count M --topic T --channel C --brokers B

Systems: ``tidings-nowait`` (``tidings.broadcast_nowait`` per message, then a flush: the
publisher of a web app that does not wait), ``tidings-sync`` (``tidings.broadcast``, waiting for
each acknowledgement), ``kafka-python`` / ``kafka-python-sync`` (the raw producer with tidings'
settings: ``acks=all``, idempotence, kafka-python's default linger 0 and batch 16 KiB;
``send`` + ``flush``, or ``send().get()`` each), ``broadcaster`` (encode/broadcaster's
``publish``, which is aiokafka's ``send_and_wait``) and ``socketio-kafka``
(``KafkaManager(write_only=True).emit``, which flushes each message). tidings is configured by
the environment (``REALTIME_BROKER=kafka`` and the ``KAFKA_*`` settings the harness sets).

Every system sends the same bytes: the tidings envelope of the same data (the raw clients build
it with ``json.dumps``, as a publisher sharing a topic with tidings gateways would).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
import uuid
from collections.abc import Callable
from typing import Any

from . import EVENT, data, report


def envelope(seq: int, channel: str) -> bytes:
    return json.dumps(
        {"id": uuid.uuid4().hex, "type": "event", "channel": channel, "event": EVENT,
         "data": data(seq, channel), "timestamp": time.time()},
        separators=(",", ":"),
    ).encode()


def run_tidings(args: argparse.Namespace, wait_each: bool) -> tuple[int, int]:
    import tidings

    tidings.broadcast(args.channel, EVENT, data(-1, args.channel))  # connect, create the topic
    mark_start()
    if wait_each:
        for seq in range(args.count):
            tidings.broadcast(args.channel, EVENT, data(seq, args.channel))
        return args.count, 0
    pendings = []
    for seq in range(args.count):
        pending = tidings.broadcast_nowait(args.channel, EVENT, data(seq, args.channel))
        while pending.done() and isinstance(_error(pending), tidings.BrokerOverloaded):
            time.sleep(0.001)  # 100,000 messages await acknowledgement: let Kafka catch up
            pending = tidings.broadcast_nowait(args.channel, EVENT, data(seq, args.channel))
        pendings.append(pending)
    tidings.realtime().broker().flush(120)
    failed = sum(1 for pending in pendings if _error(pending) is not None)
    return args.count - failed, failed


def _error(pending: Any) -> BaseException | None:
    try:
        pending.result(0)
    except Exception as exc:
        return exc
    return None


def run_kafka_python(args: argparse.Namespace, wait_each: bool) -> tuple[int, int]:
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=args.brokers.split(","), acks="all", enable_idempotence=True,
        linger_ms=0, batch_size=16_384,
    )
    key = args.channel.encode()
    producer.send(args.topic, envelope(-1, args.channel), key=key).get(30)
    mark_start()
    if wait_each:
        for seq in range(args.count):
            producer.send(args.topic, envelope(seq, args.channel), key=key).get(30)
        return args.count, 0
    futures = [
        producer.send(args.topic, envelope(seq, args.channel), key=key) for seq in range(args.count)
    ]
    producer.flush(120)
    failed = sum(1 for future in futures if future.failed())
    return args.count - failed, failed


def run_broadcaster(args: argparse.Namespace) -> tuple[int, int]:
    from broadcaster import Broadcast

    async def publish_all() -> None:
        async with Broadcast(f"kafka://{args.brokers.split(',')[0]}") as broadcast:
            await broadcast.publish(args.topic, envelope(-1, args.channel).decode())
            mark_start()
            for seq in range(args.count):
                await broadcast.publish(args.topic, envelope(seq, args.channel).decode())

    asyncio.run(publish_all())
    return args.count, 0


def run_socketio(args: argparse.Namespace) -> tuple[int, int]:
    import socketio

    from .publisher import _bytes_json

    manager = socketio.KafkaManager(
        f"kafka://{args.brokers.split(',')[0]}", channel=args.sio_topic, write_only=True,
        json=_bytes_json(),
    )
    manager.emit(EVENT, data(-1, args.channel), room=args.channel, namespace="/")
    mark_start()
    for seq in range(args.count):
        manager.emit(EVENT, data(seq, args.channel), room=args.channel, namespace="/")
    return args.count, 0


_started: list[tuple[float, float]] = []


def mark_start() -> None:
    """Timing starts here: after the warm-up message that connects and creates the topic.
    Wall clock and this process's CPU time (every thread's: the clients' network threads too)."""
    _started.append((time.perf_counter(), time.process_time()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Kafka publish throughput of one system.")
    parser.add_argument("system", choices=["tidings-nowait", "tidings-sync", "kafka-python",
                                           "kafka-python-sync", "broadcaster", "socketio-kafka"])
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--channel", required=True)
    parser.add_argument("--topic", required=True, help="the channel's tidings topic")
    parser.add_argument("--sio-topic", help="KafkaManager channel (socketio-kafka)")
    parser.add_argument("--brokers", default="127.0.0.1:9092")
    args = parser.parse_args(argv)
    runners: dict[str, Callable[[], tuple[int, int]]] = {
        "tidings-nowait": lambda: run_tidings(args, wait_each=False),
        "tidings-sync": lambda: run_tidings(args, wait_each=True),
        "kafka-python": lambda: run_kafka_python(args, wait_each=False),
        "kafka-python-sync": lambda: run_kafka_python(args, wait_each=True),
        "broadcaster": lambda: run_broadcaster(args),
        "socketio-kafka": lambda: run_socketio(args),
    }
    sent, failed = runners[args.system]()
    wall, cpu = _started[-1]
    seconds = time.perf_counter() - wall
    cpu_seconds = time.process_time() - cpu
    report({"system": args.system, "messages": sent, "errors": failed, "seconds": seconds,
            "rate": sent / seconds if seconds else 0.0, "cpu_seconds": cpu_seconds,
            "per_cpu_s": sent / cpu_seconds if cpu_seconds else 0.0})


if __name__ == "__main__":
    main()
    os._exit(0)
