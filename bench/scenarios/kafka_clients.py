"""Scenarios 3 and 4: publishing to and consuming from Kafka, without sockets.

The worker process (the system under test) runs on core 0, one system at a time; each run
is repeated ``plan.repeats`` times and the best is reported (every run is in results.json).
"""

from __future__ import annotations

from typing import Any

from ..core import SUT_CORE, Context
from ..systems import create_topic

PUBLISH = "3-publish"
CONSUME = "4-consume"


def _best(ctx: Context, scenario: str, runs: list[dict[str, Any]]) -> dict[str, Any]:
    for run in runs:
        ctx.results.runs.append({"scenario": scenario, **run})
    return max(runs, key=lambda run: float(run["rate"]))


def run_publish(ctx: Context) -> None:
    plan = ctx.plan
    prefix = ctx.prefix("p")
    channel = "bench.publish"
    topic = f"{prefix}_bench_publish"
    sio_topic = f"{prefix}-socketio"
    for name in (topic, sio_topic):
        create_topic(ctx.brokers, name)
    env = ctx.env(REALTIME_BROKER="kafka", KAFKA_BROKERS=ctx.brokers, KAFKA_TOPIC_PREFIX=prefix)
    async_case = f"{plan.publish_messages:,} messages, send all then flush"
    sync_case = f"{plan.publish_sync_messages:,} messages, wait for each acknowledgement"
    ctx.results.scenarios[PUBLISH] = {
        "title": "Publish to Kafka",
        "about": (
            "Messages/s into one topic, acks=all and idempotence for tidings and kafka-python "
            "(kafka-python defaults otherwise: linger 0, batch 16 KiB); broadcaster's publish is "
            "aiokafka's send_and_wait with aiokafka's defaults (acks=1); KafkaManager flushes "
            "every emit. Same ~330-byte envelope for all."
        ),
    }
    plans = [
        ("tidings-nowait", plan.publish_messages, async_case),
        ("kafka-python", plan.publish_messages, async_case),
        ("tidings-sync", plan.publish_sync_messages, sync_case),
        ("kafka-python-sync", plan.publish_sync_messages, sync_case),
        ("broadcaster", plan.publish_sync_messages, sync_case),
        ("socketio-kafka", plan.publish_sync_messages, sync_case),
    ]
    runs: dict[str, list[dict[str, Any]]] = {}
    for attempt in range(plan.repeats):
        for system, count, _ in plans:
            ctx.log(f"{PUBLISH}: {system}, {count:,} messages (run {attempt + 1})")
            runs.setdefault(system, []).append(ctx.worker(
                f"publish-{system}-{attempt}", "kafka_publish",
                [system, "--count", str(count), "--channel", channel, "--topic", topic,
                 "--sio-topic", sio_topic, "--brokers", ctx.brokers],
                core=SUT_CORE, env=env,
            ))
    for system, _, case in plans:
        best = _best(ctx, PUBLISH, runs[system])
        ctx.results.figure(PUBLISH, case, system, "rate", float(best["rate"]), "msg/s")
        if best.get("errors"):
            ctx.results.problem(f"{PUBLISH}/{system}: {best['errors']} messages failed")
        ctx.results.row(PUBLISH, case, "messages/s", ("rate",), unit="msg/s")
    ctx.results.pair(PUBLISH, "tidings-nowait", "kafka-python")
    ctx.results.pair(PUBLISH, "tidings-sync", "kafka-python-sync")
    ctx.results.pair(PUBLISH, "tidings-sync", "broadcaster")
    ctx.results.pair(PUBLISH, "tidings-sync", "socketio-kafka")


def run_consume(ctx: Context) -> None:
    plan = ctx.plan
    prefix = ctx.prefix("c")
    channel = "bench.consume"
    topic = f"{prefix}_bench_consume"
    count = plan.consume_messages
    create_topic(ctx.brokers, topic)
    ctx.log(f"{CONSUME}: filling {topic} with {count:,} tidings envelopes")
    ctx.worker("consume-fill", "kafka_consume",
               ["fill", "--count", str(count), "--channel", channel, "--topic", topic,
                "--brokers", ctx.brokers], core=None, timeout=900)
    case = f"{count:,} messages from one partition"
    ctx.results.scenarios[CONSUME] = {
        "title": "Consume from Kafka",
        "about": (
            "Messages/s read from a pre-filled topic, first message to last: tidings' KafkaFeed "
            "reading every channel as a gateway does (polls of up to 2,000 records; envelopes "
            "decoded up to their channel; messages built only for local subscribers; the "
            "gateway's interpreter settings), "
            "handing batches of 500 to Hub.dispatch (no local subscribers) and committing each, "
            "the raw kafka-python poll loop (500 a poll, json.loads of each value, commit each "
            "poll), broadcaster's subscriber (json.loads of each)."
        ),
    }
    runs: dict[str, list[dict[str, Any]]] = {}
    for attempt in range(plan.repeats):
        for system in ("tidings", "kafka-python", "broadcaster"):
            ctx.log(f"{CONSUME}: {system} (run {attempt + 1})")
            runs.setdefault(system, []).append(ctx.worker(
                f"consume-{system}-{attempt}", "kafka_consume",
                [system, "--count", str(count), "--channel", channel, "--topic", topic,
                 "--prefix", prefix, "--group", f"bench-{ctx.run_id}-{system}-{attempt}",
                 "--brokers", ctx.brokers],
                core=SUT_CORE, timeout=900,
            ))
    for system, system_runs in runs.items():
        best = _best(ctx, CONSUME, system_runs)
        ctx.results.figure(CONSUME, case, system, "rate", float(best["rate"]), "msg/s")
        if int(best["messages"]) < count:
            ctx.results.problem(f"{CONSUME}/{system}: read {best['messages']} of {count}")
    ctx.results.row(CONSUME, case, "messages/s", ("rate",), unit="msg/s")
    ctx.results.pair(CONSUME, "tidings", "kafka-python")
    ctx.results.pair(CONSUME, "tidings", "broadcaster")
