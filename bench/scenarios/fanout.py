"""Scenarios 1 and 6, fan-out: N clients on one channel, each message goes to all of them.

Scenario 1 runs it through Kafka (tidings' Kafka gateway vs python-socketio with its
KafkaManager), scenario 6 in one process (tidings' memory broker vs python-socketio's in-process
server, and vs Centrifugo's memory engine where Centrifugo could be built). For each N: a fixed
offered load (the same deliveries/s for every N, low enough for every system to sustain) for
latency, then a flat-out burst for throughput at saturation, published in lists of 100 messages
per request. Scenario 6 adds, for tidings and Centrifugo, saturation with one message per
request, from 1 publisher and from 8 concurrent ones (what most applications do).

Every phase checks every client's messages (``clients.check_deliveries``): each client must get
each message once, in order, or the scenario fails.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from ..clients import LoadGen, check_deliveries
from ..core import Context
from ..systems import CENTRIFUGO_ABOUT, Server, centrifugo_skipped, start_server
from .common import interleave, note_client_bound, phase, server_tag, warm_up

CHANNEL = "bench.fanout"
KAFKA = "1-fanout-kafka"
MEMORY = "6-fanout-memory"
SINGLE_PUBLISHERS = (1, 8)
"""Concurrent publishers of the one-message-per-request saturation phases (scenario 6)."""
SINGLE_MODES = ("tidings-memory", "centrifugo")
"""The systems measured with one message per request too (python-socketio keeps its lists)."""


def run(ctx: Context, broker: str) -> None:
    plan = ctx.plan
    scenario = KAFKA if broker == "kafka" else MEMORY
    tidings, *peers = (("tidings-kafka", "socketio-kafka") if broker == "kafka"
                       else ("tidings-memory", "socketio", "socketio-asyncio"))
    ctx.results.scenarios[scenario] = {
        "title": f"Fan-out, {'through Kafka' if broker == 'kafka' else 'one process'}",
        "about": (
            f"N clients subscribed to one channel; the fixed-rate phase offers "
            f"{plan.fixed_deliveries_per_s:,} deliveries/s (N x messages/s) for "
            f"{plan.fixed_seconds:g} s, the saturation phase publishes "
            f"{plan.saturation_deliveries:,} / N messages flat out."
        ),
    }
    for peer in peers:
        ctx.results.pair(scenario, tidings, peer)
    systems = [tidings, *peers]
    if broker == "memory":
        ctx.results.scenarios[scenario]["about"] += (
            " Then, for tidings and Centrifugo, saturation with one message per request "
            f"(`POST /broadcast` with one message object; Centrifugo's `/api/publish`), from "
            f"{' and from '.join(str(p) for p in SINGLE_PUBLISHERS)} concurrent publishers. "
            + CENTRIFUGO_ABOUT
        )
        if not centrifugo_skipped(ctx, scenario):
            ctx.results.pair(scenario, tidings, "centrifugo")
            systems.append("centrifugo")
    for n in plan.fanout_connections:
        interleave(ctx, f"{scenario}/{n}", tuple(systems), plan.repeats,
                   lambda system, run, n=n: _one(ctx, scenario, system, n, run))


def _one(ctx: Context, scenario: str, system: str, n: int, run: int = 0) -> None:
    ctx.log(f"{scenario}: {system}, {n:,} connections")
    server = start_server(ctx, system, server_tag(scenario, system, f"n{n}", run))
    try:
        measure(ctx, scenario, server, n,
                single=scenario == MEMORY and system in SINGLE_MODES)
    finally:
        ctx.procs.stop(server.child)


def measure(ctx: Context, scenario: str, server: Server, n: int, *, single: bool = False) -> None:
    """Scenario 1's case on a running server: ``n`` clients of ``server.system`` on one
    channel, a warm-up, the fixed-rate phase and the saturation phase; the figures and rows.
    ``single``: then saturation with one message per request (``single_request``)."""
    plan = ctx.plan
    system = server.system
    case = f"{n:,} connections"
    loadgen = LoadGen.connect(ctx, server, n=n, channel=CHANNEL, name=f"{scenario}-{system}")
    try:
        warm_up(ctx, server, loadgen, channel=CHANNEL, users=1,
                expected=3 * loadgen.connected)
        rate = plan.fixed_deliveries_per_s / n
        fixed = phase(
            ctx, server, loadgen, scenario=scenario, case=f"{case}, fixed", rate=rate,
            count=max(5, round(rate * plan.fixed_seconds)), max_seconds=plan.fixed_seconds * 2,
            channel=CHANNEL, users=1, per_message=loadgen.connected, seed=n,
        )
        saturated = phase(
            ctx, server, loadgen, scenario=scenario, case=f"{case}, saturation", rate=0,
            count=max(20, plan.saturation_deliveries // n),
            max_seconds=plan.saturation_seconds, channel=CHANNEL, users=1,
            per_message=loadgen.connected, seed=n + 1,
            profile=ctx.profile and system.startswith("tidings") and n == 1000,
        )
        check_deliveries(fixed, channel=CHANNEL, what=f"{scenario}/{system}/{case}, fixed")
        check_deliveries(saturated, channel=CHANNEL,
                         what=f"{scenario}/{system}/{case}, saturation")
        if single:
            for publishers in SINGLE_PUBLISHERS:
                single_request(ctx, scenario, server, loadgen, n, publishers)
    finally:
        loadgen.close()

    results = ctx.results
    results.figure(scenario, case, system, "connect_s", float(loadgen.ready["seconds"]), "s")
    results.figure(scenario, case, system, "fixed_rate", float(fixed["rate"]), "/s")
    results.figure(scenario, case, system, "fixed_cpu_share", float(fixed["server_cpu_share"]))
    results.figure(scenario, case, system, "sat_rate", float(saturated["throughput"]), "/s")
    results.figure(scenario, case, system, "sat_per_cpu_s",
                   float(saturated["deliveries_per_cpu_s"]), "/CPU-s")
    results.figure(scenario, case, system, "sat_cpu_share",
                   float(saturated["server_cpu_share"]))
    for metric in ("p50_ms", "p99_ms", "max_ms"):
        results.figure(scenario, case, system, f"fixed_{metric}", float(fixed[metric]), "ms")
        results.figure(scenario, case, system, f"sat_{metric}", float(saturated[metric]), "ms")
    note_client_bound(ctx, scenario, case, system, saturated)
    if fixed["rate"] < 0.9 * plan.fixed_deliveries_per_s:
        results.note(scenario, case, system,
                     f"kept up with only {fixed['rate']:,.0f} of the "
                     f"{plan.fixed_deliveries_per_s:,} deliveries/s offered")
    offered = f"{plan.fixed_deliveries_per_s:,}"
    results.row(scenario, case, "deliveries/s at saturation", ("sat_rate",), unit="/s")
    results.row(scenario, case, "deliveries per CPU-second (saturation)", ("sat_per_cpu_s",),
                unit="/CPU-s")
    results.row(scenario, case, f"latency at {offered} deliveries/s, p50 / p99 / max",
                ("fixed_p50_ms", "fixed_p99_ms", "fixed_max_ms"), ratio="fixed_p99_ms",
                better="lower", unit="ms")
    results.row(scenario, case, "latency at saturation, p50 / p99 / max",
                ("sat_p50_ms", "sat_p99_ms", "sat_max_ms"), ratio="sat_p99_ms",
                better="lower", unit="ms")


def single_case(n: int, publishers: int) -> str:
    return (f"{n:,} connections, 1 message per request"
            + (f", {publishers} publishers" if publishers > 1 else ""))


def single_request(
    ctx: Context, scenario: str, server: Server, loadgen: LoadGen, n: int, publishers: int
) -> dict[str, Any]:
    """Saturation with one message per HTTP request from ``publishers`` concurrent ones."""
    plan = ctx.plan
    system = server.system
    case = single_case(n, publishers)
    one_each = replace(server, publisher_args=[*server.publisher_args, "--per-request", "1",
                                               "--parallel", str(publishers)])
    result = phase(
        ctx, one_each, loadgen, scenario=scenario, case=f"{case}, saturation", rate=0,
        count=max(20, plan.saturation_deliveries // n), max_seconds=plan.saturation_seconds,
        channel=CHANNEL, users=1, per_message=loadgen.connected, seed=n + 10 + publishers,
    )
    check_deliveries(result, channel=CHANNEL, what=f"{scenario}/{system}/{case}")
    results = ctx.results
    results.figure(scenario, case, system, "sat_rate", float(result["throughput"]), "/s")
    results.figure(scenario, case, system, "sat_per_cpu_s",
                   float(result["deliveries_per_cpu_s"]), "/CPU-s")
    results.figure(scenario, case, system, "sat_cpu_share", float(result["server_cpu_share"]))
    published = result.get("published") or {}
    if published.get("seconds"):
        results.figure(scenario, case, system, "requests_per_s",
                       float(published["sent"]) / float(published["seconds"]), "/s")
    for metric in ("p50_ms", "p99_ms", "max_ms"):
        results.figure(scenario, case, system, f"sat_{metric}", float(result[metric]), "ms")
    note_client_bound(ctx, scenario, case, system, result)
    results.row(scenario, case, "deliveries/s at saturation", ("sat_rate",), unit="/s")
    results.row(scenario, case, "deliveries per CPU-second (saturation)", ("sat_per_cpu_s",),
                unit="/CPU-s")
    results.row(scenario, case, "messages (requests) published per second", ("requests_per_s",),
                unit="/s")
    results.row(scenario, case, "latency at saturation, p50 / p99 / max",
                ("sat_p50_ms", "sat_p99_ms", "sat_max_ms"), ratio="sat_p99_ms",
                better="lower", unit="ms")
    return result
