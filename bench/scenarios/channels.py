"""Scenario 2, many channels: every client on its own ``user.N`` channel (a Socket.IO room).

tidings clients connect with a token for user N (HS256, the gateway's REALTIME_SECRET) and
subscribe to ``user.N``; Socket.IO clients join room ``user.N``. Messages go to random users.
The latency phase is the issue's target: 1,000 messages/s spread over 1,000 clients (the first
1,000 users; all clients stay connected). At saturation, one message is one delivery, so a
Python publisher cannot outrun a Kafka gateway: the Kafka servers are stopped while the
messages are published and resumed to deliver the backlog (``phase(backlog=True)``); the
memory-broker servers take the publisher's HTTP requests themselves, flat out. tidings' Kafka
gateway uses the shared topic strategy (``KAFKA_TOPIC_STRATEGY=shared``: a few topics keyed by
channel), the one meant for this many channels; KafkaManager always uses one topic.

Centrifugo (memory engine, where it could be built) runs beside both tidings gateways: its
clients connect with an HS256 token for user N (the same tokens, the same secret) and subscribe
to ``user#N``, its user-limited channel that only user N may join: the same permission rule as
tidings' ``user.N``. Every phase checks every client's messages (``clients.check_deliveries``):
the publisher counts the messages each user's channel was sent, and each client must get exactly
those, once each, in order, or the scenario fails.
"""

from __future__ import annotations

from ..clients import LoadGen, check_deliveries
from ..core import Context
from ..systems import CENTRIFUGO_ABOUT, centrifugo_skipped, start_server
from .common import interleave, note_client_bound, phase, server_tag, tokens_file, warm_up

SCENARIO = "2-many-channels"
CHANNEL = "user.{i}"
SYSTEMS = ("tidings-memory", "socketio", "socketio-asyncio", "tidings-kafka", "socketio-kafka")
CENTRIFUGO_CHANNEL = "user#{i}"
"""Centrifugo's user-limited channel of user N: only a connection of user N may subscribe."""
BACKLOG_SECONDS = 10.0
"""A Kafka server is stopped while its backlog is published: well under Kafka's 45 s session
timeout, so its consumer group does not rebalance meanwhile."""


def run(ctx: Context) -> None:
    plan = ctx.plan
    n = plan.channels_connections
    ctx.results.scenarios[SCENARIO] = {
        "title": "Many channels",
        "about": (
            f"{n:,} clients, each on its own user.N channel; the latency phase sends "
            f"{plan.channels_latency_rate:,} messages/s for {plan.channels_latency_seconds:g} s "
            f"to random users among the first {min(n, plan.channels_latency_clients):,}; the "
            f"saturation phase sends {plan.channels_saturation_messages:,} messages to random "
            "users flat out "
            "(through Kafka: published while the server is stopped, then delivered as a "
            f"backlog; at most {BACKLOG_SECONDS:g} s of publishing). Centrifugo's clients "
            "carry a token for user N and subscribe to its user-limited channel `user#N`. "
            + CENTRIFUGO_ABOUT
        ),
    }
    ctx.results.pair(SCENARIO, "tidings-memory", "socketio")
    ctx.results.pair(SCENARIO, "tidings-memory", "socketio-asyncio")
    ctx.results.pair(SCENARIO, "tidings-kafka", "socketio-kafka")
    systems = list(SYSTEMS)
    if not centrifugo_skipped(ctx, SCENARIO):
        ctx.results.pair(SCENARIO, "tidings-memory", "centrifugo")
        ctx.results.pair(SCENARIO, "tidings-kafka", "centrifugo")
        systems.insert(3, "centrifugo")
    interleave(ctx, SCENARIO, tuple(systems), plan.repeats,
               lambda system, run: _one(ctx, system, n, run=run))


def _one(ctx: Context, system: str, n: int, scenario: str = SCENARIO, run: int = 0) -> None:
    plan = ctx.plan
    case = f"{n:,} connections"
    ctx.log(f"{scenario}: {system}, {case}")
    tokens = tokens_file(ctx, n) if system.startswith(("tidings", "centrifugo")) else None
    channel = CENTRIFUGO_CHANNEL if system.startswith("centrifugo") else CHANNEL
    server = start_server(ctx, system, server_tag(scenario, system, f"c{n}", run),
                          strategy="shared")
    clients = min(n, plan.channels_latency_clients)
    kafka = system.endswith("kafka")
    rate = plan.channels_latency_rate
    try:
        loadgen = LoadGen.connect(ctx, server, n=n, channel=channel, tokens=tokens,
                                  name=f"{scenario}-{system}")
        try:
            warm_up(ctx, server, loadgen, channel=channel, users=clients, expected=40)
            latency = phase(
                ctx, server, loadgen, scenario=scenario, case=f"{case}, latency", rate=rate,
                count=round(rate * plan.channels_latency_seconds),
                max_seconds=plan.channels_latency_seconds * 2,
                channel=channel, users=clients, per_message=1, seed=7,
            )
            check_deliveries(latency, channel=channel, what=f"{scenario}/{system}/{case}, latency")
            saturated = phase(
                ctx, server, loadgen, scenario=scenario, case=f"{case}, saturation", rate=0,
                count=plan.channels_saturation_messages,
                max_seconds=min(plan.saturation_seconds, BACKLOG_SECONDS), channel=channel,
                users=n, per_message=1, seed=8, backlog=kafka,
                profile=ctx.profile and system.startswith("tidings"),
            )
            check_deliveries(saturated, channel=channel,
                             what=f"{scenario}/{system}/{case}, saturation")
        finally:
            loadgen.close()
    finally:
        ctx.procs.stop(server.child)

    results = ctx.results
    results.figure(scenario, case, system, "connect_s", float(loadgen.ready["seconds"]), "s")
    results.figure(scenario, case, system, "lat_rate", float(latency["rate"]), "/s")
    results.figure(scenario, case, system, "sat_rate", float(saturated["throughput"]), "/s")
    results.figure(scenario, case, system, "sat_per_cpu_s",
                   float(saturated["deliveries_per_cpu_s"]), "/CPU-s")
    for metric in ("p50_ms", "p99_ms", "max_ms"):
        results.figure(scenario, case, system, f"lat_{metric}", float(latency[metric]), "ms")
        if not saturated["backlog"]:  # a backlog's latency counts the time the server was stopped
            results.figure(scenario, case, system, f"sat_{metric}", float(saturated[metric]),
                           "ms")
    note_client_bound(ctx, scenario, case, system, saturated)
    if latency["rate"] < 0.9 * rate:
        results.note(scenario, case, system,
                     f"delivered only {latency['rate']:,.0f} of the {rate:,} messages/s offered")
    results.row(scenario, case,
                f"latency at {rate:,} msg/s to {clients:,} clients, p50 / p99 / max",
                ("lat_p50_ms", "lat_p99_ms", "lat_max_ms"), ratio="lat_p99_ms", better="lower",
                unit="ms")
    results.row(scenario, case, "deliveries/s at saturation (random users)", ("sat_rate",),
                unit="/s")
    results.row(scenario, case, "deliveries per CPU-second (saturation)", ("sat_per_cpu_s",),
                unit="/CPU-s")
    results.row(scenario, case, "latency at saturation, p50 / p99 / max",
                ("sat_p50_ms", "sat_p99_ms", "sat_max_ms"), ratio="sat_p99_ms", better="lower",
                unit="ms")
