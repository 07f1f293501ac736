"""Scenarios 3 and 4: publishing to and consuming from Kafka, without sockets.

The worker process (the system under test) runs on core 0, one system at a time; the systems
of a case run interleaved (``interleave``: A, B, C, then B, C, A...), ``plan.repeats`` times each;
the report shows the median and the spread of the runs (every run is in results.json).
"""

from __future__ import annotations

from ..core import SUT_CORE, Context
from ..systems import create_topic
from .common import interleave

PUBLISH = "3-publish"
CONSUME = "4-consume"


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
            "every emit. Same ~330-byte envelope for all. Per CPU-second: messages over the "
            "publishing process's CPU time (all its threads) while timed."
        ),
    }
    plans = {
        "tidings-nowait": (plan.publish_messages, async_case),
        "kafka-python": (plan.publish_messages, async_case),
        "tidings-sync": (plan.publish_sync_messages, sync_case),
        "kafka-python-sync": (plan.publish_sync_messages, sync_case),
        "broadcaster": (plan.publish_sync_messages, sync_case),
        "socketio-kafka": (plan.publish_sync_messages, sync_case),
    }

    def measure(system: str, attempt: int) -> None:
        count, case = plans[system]
        run = ctx.worker(
            f"publish-{system}-{attempt}", "kafka_publish",
            [system, "--count", str(count), "--channel", channel, "--topic", topic,
             "--sio-topic", sio_topic, "--brokers", ctx.brokers],
            core=SUT_CORE, env=env,
        )
        ctx.results.runs.append({"scenario": PUBLISH, "run": attempt + 1, **run})
        ctx.results.figure(PUBLISH, case, system, "rate", float(run["rate"]), "msg/s")
        ctx.results.figure(PUBLISH, case, system, "per_cpu_s", float(run["per_cpu_s"]),
                           "/CPU-s")
        if run.get("errors"):
            ctx.results.problem(f"{PUBLISH}/{system} (run {attempt + 1}): {run['errors']} "
                                "messages failed")

    # Each case's systems interleaved with each other, cases one after the other.
    for case in (async_case, sync_case):
        systems = [system for system, (_, each) in plans.items() if each == case]
        interleave(ctx, f"{PUBLISH}/{case.split(',')[0]}", systems, plan.repeats, measure)
        ctx.results.row(PUBLISH, case, "messages/s", ("rate",), unit="msg/s")
        ctx.results.row(PUBLISH, case, "messages per CPU-second of the publisher",
                        ("per_cpu_s",), unit="/CPU-s")
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
            "Messages/s read from a pre-filled topic, first message to last. tidings' KafkaFeed "
            "reads every channel as a gateway does: polls of up to 2,000 records, each envelope "
            "decoded with orjson only as far as its channel (the rest is built into a message "
            "only for local subscribers), the gateway's interpreter settings, batches of 500 "
            "handed to Hub.dispatch (no local subscribers), commits without waiting. "
            "kafka-python two ways: *as tidings' feed* (like for like: polls of up to 2,000, "
            "orjson.loads of each value and its channel checked, asynchronous commits), the "
            "pair the target reads; and *as an app* would use it (kafka-python's default 500 a "
            "poll, json.loads of each value, a synchronous commit after each poll). "
            "broadcaster's subscriber: json.loads of each. Per CPU-second: messages over the "
            "consuming process's CPU time (all its threads), first message to last."
        ),
    }
    systems = ("tidings", "kafka-python-feed", "kafka-python-plain", "broadcaster")

    def measure(system: str, attempt: int) -> None:
        run = ctx.worker(
            f"consume-{system}-{attempt}", "kafka_consume",
            [system, "--count", str(count), "--channel", channel, "--topic", topic,
             "--prefix", prefix, "--group", f"bench-{ctx.run_id}-{system}-{attempt}",
             "--brokers", ctx.brokers],
            core=SUT_CORE, timeout=900,
        )
        ctx.results.runs.append({"scenario": CONSUME, "run": attempt + 1, **run})
        ctx.results.figure(CONSUME, case, system, "rate", float(run["rate"]), "msg/s")
        ctx.results.figure(CONSUME, case, system, "per_cpu_s", float(run["per_cpu_s"]),
                           "/CPU-s")
        if int(run["messages"]) < count:
            ctx.results.problem(f"{CONSUME}/{system} (run {attempt + 1}): read "
                                f"{run['messages']} of {count}")

    interleave(ctx, CONSUME, systems, plan.repeats, measure)
    ctx.results.row(CONSUME, case, "messages/s", ("rate",), unit="msg/s")
    ctx.results.row(CONSUME, case, "messages per CPU-second of the consumer", ("per_cpu_s",),
                    unit="/CPU-s")
    ctx.results.pair(CONSUME, "tidings", "kafka-python-feed")
    ctx.results.pair(CONSUME, "tidings", "kafka-python-plain")
    ctx.results.pair(CONSUME, "tidings", "broadcaster")
