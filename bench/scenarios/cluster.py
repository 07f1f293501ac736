"""Scenario 10, a 3-node cluster checked against the scale-out model (``bench/model.py``).

Three ``tidings serve --broker kafka`` gateways on one topic prefix (shared topics, each node its
own consumer group: every node reads every message, ADR 0005 and 0012), all three on the
system-under-test core (0); the load generators and publishers on the other (1), Kafka floating.
Three processes on one core compete for it, but each one's CPU time (utime + stime of
/proc/PID/stat) is what it spent, whoever waited: the model predicts CPU time, not speed.

1. **Base**: the three nodes with no client and no traffic, for a few seconds: CPU per second.
2. **Read**: the three nodes stopped (SIGSTOP), a backlog of messages for channels nobody holds
   published, the nodes resumed; each node's CPU until its ``tidings_messages_in_total``
   (``/metrics``) has counted the backlog, minus the base, per message.
3. **Idle**: C connections, a third on each node, no traffic: CPU per connection-second above
   the base.
4. **Stream**: the check's traffic (below) to channels nobody holds: what a live stream costs a
   node beyond ``read`` per message (small batches, wake-ups, commits), in cores.
5. **The check**: M messages/s for T seconds, one message per publish (``broadcast_nowait``),
   each to one random client of the cluster (three publishers, one per node's channel family
   ``nK.{i}``, M/3 each). The model (with the read, stream, idle and base costs just measured,
   and the per-delivery costs of scenarios 1 and 2 of this run, or of ``bench/results.json``)
   predicts each node's CPU-seconds; the table is measured vs predicted.
"""

from __future__ import annotations

import json
import os
import re
import signal
import time
import urllib.request
from dataclasses import dataclass, replace
from typing import Any

from .. import model
from ..clients import LoadGen
from ..core import LOAD_CORE, SUT_CORE, Context
from ..procs import Child, free_port, wait_http
from ..systems import QUEUE_SIZE, Server, _tidings_command
from .common import warm_up

SCENARIO = "10-cluster"
SYSTEM = "tidings-kafka"
PREDICTED = "model"
NODES = 3
BACKLOG_MAX_SECONDS = 10.0
"""The nodes are stopped while the backlog is published: well under Kafka's 45 s session timeout."""


@dataclass(frozen=True)
class Size:
    connections: int
    """In the whole cluster, a third on each node."""
    rate: int
    """Messages/s of the check, the whole stream."""
    seconds: float
    backlog: int
    """Messages of the read measurement."""
    quiet_seconds: float
    """Length of the base and idle measurements."""


SIZES = {
    "smoke": Size(connections=60, rate=300, seconds=3, backlog=3_000, quiet_seconds=2),
    "quick": Size(connections=1_500, rate=3_000, seconds=10, backlog=30_000, quiet_seconds=10),
    "full": Size(connections=3_000, rate=4_500, seconds=20, backlog=90_000, quiet_seconds=20),
}


@dataclass
class Node:
    index: int
    server: Server

    @property
    def child(self) -> Child:
        return self.server.child

    def metric(self, name: str) -> float:
        """One unlabelled sample of the node's ``/metrics`` (0 when absent)."""
        with urllib.request.urlopen(f"{self.server.http_url}/metrics", timeout=10) as answer:
            text = answer.read().decode()
        found = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        return float(found.group(1)) if found else 0.0


def run(ctx: Context) -> None:
    size = SIZES[ctx.plan.name]
    ctx.results.scenarios[SCENARIO] = {
        "title": "A 3-node cluster against the scale-out model",
        "about": (
            f"Three Kafka gateways on one core, {size.connections:,} connections (a third on "
            f"each), {size.rate:,} messages/s for {size.seconds:g} s, one message per publish, "
            "each to one random client of the cluster. Each node's CPU-seconds (/proc) against "
            "`bench/model.py`'s prediction from the costs measured just before (read: a "
            f"backlog of {size.backlog:,} messages nobody holds; idle and base: "
            f"{size.quiet_seconds:g} s with and without clients) and the per-delivery costs of "
            "scenarios 1 and 2. The ratio is measured / predicted."
        ),
        "ratio": "measured / model",
    }
    ctx.results.pair(SCENARIO, SYSTEM, PREDICTED)
    prefix = ctx.prefix("cluster")
    kafka_env = {
        "KAFKA_BROKERS": ctx.brokers,
        "KAFKA_TOPIC_PREFIX": prefix,
        "KAFKA_TOPIC_STRATEGY": "shared",
        "KAFKA_CONSUMER_GROUP": f"bench-{ctx.run_id}",
    }
    nodes = [_start(ctx, k, kafka_env) for k in range(NODES)]
    loadgens: list[LoadGen] = []
    try:
        for node in nodes:  # every node's feed placed and reading before anything is measured
            _wait_reading(ctx, node, nodes)
        base = _base(ctx, nodes, size.quiet_seconds)
        read = _read(ctx, nodes, size.backlog, base)
        per_node = size.connections // NODES
        for node in nodes:
            loadgens.append(LoadGen.connect(ctx, node.server, n=per_node,
                                            channel=f"n{node.index}.{{i}}",
                                            name=f"{SCENARIO}-node{node.index}"))
        for node, loadgen in zip(nodes, loadgens, strict=True):
            warm_up(ctx, node.server, loadgen, channel=f"n{node.index}.{{i}}", users=per_node,
                    expected=10)
        idle = _idle(ctx, nodes, per_node, size.quiet_seconds, base)
        stream = _stream(ctx, nodes, size, read, [b + i * per_node for b, i in zip(base, idle,
                                                                                  strict=True)])
        costs = _costs(ctx, read, idle, base, stream)
        _check(ctx, nodes, loadgens, size, costs)
    finally:
        for loadgen in loadgens:
            loadgen.close()
        for node in nodes:
            ctx.procs.stop(node.child)


def _start(ctx: Context, index: int, kafka_env: dict[str, str]) -> Node:
    port = free_port()
    env = ctx.env(
        REALTIME_BROKER="kafka", REALTIME_SECRET=ctx.secret, REALTIME_API_KEY=ctx.api_key,
        REALTIME_QUEUE_SIZE=str(QUEUE_SIZE), REALTIME_IDLE_TIMEOUT="3600",
        REALTIME_HANDSHAKE_TIMEOUT="60", REALTIME_MAX_CONNECTIONS="0",
        REALTIME_MAX_CONNECTIONS_PER_IP="0", **kafka_env,
    )
    argv = [*_tidings_command(ctx.python), "--log-level", "WARNING", "serve", "--port",
            str(port), "--node-id", f"bench-{ctx.run_id}-cluster{index}"]
    child = ctx.procs.start(f"{SCENARIO}-node{index}", argv, core=SUT_CORE, env=env,
                            cwd=ctx.work)
    wait_http(f"http://127.0.0.1:{port}/healthz", child, timeout=90)
    server = Server(SYSTEM, child, port, "tidings-kafka",
                    ctx.env(REALTIME_BROKER="kafka", **kafka_env))
    return Node(index, server)


def _publish(ctx: Context, server: Server, name: str, *, count: int, rate: float,
             max_seconds: float, channel: str, users: int, seed: int) -> Child:
    argv = [ctx.python, "-m", "bench.workers.publisher", server.publisher_kind,
            "--count", str(count), "--rate", f"{rate:g}", "--max-seconds", f"{max_seconds:g}",
            "--channel", channel, "--users", str(users), "--seed", str(seed)]
    return ctx.procs.start(name, argv, core=LOAD_CORE, env=server.publisher_env, cwd=ctx.work,
                           pipe=True)


def _finish(ctx: Context, child: Child, timeout: float) -> dict[str, Any]:
    """The publisher's summary line, once it has exited."""
    deadline = time.monotonic() + timeout
    summary: dict[str, Any] = {}
    while time.monotonic() < deadline:
        line = child.readline(max(0.5, deadline - time.monotonic()))
        if line is None:
            break
        if line.startswith("{"):
            summary = json.loads(line)
    ctx.procs.stop(child)
    if not summary:
        raise RuntimeError(f"{child.name} gave no summary within {timeout:g} s:\n{child.tail()}")
    return summary


def _wait_reading(ctx: Context, node: Node, nodes: list[Node], timeout: float = 120) -> None:
    """Publish slowly until every node has counted a message from the broker."""
    before = [n.metric("tidings_messages_in_total") for n in nodes]
    child = _publish(ctx, node.server, f"{SCENARIO}-warm{node.index}", count=5_000, rate=20,
                     max_seconds=timeout, channel="warm.{i}", users=100, seed=90 + node.index)
    try:
        deadline = time.monotonic() + timeout
        while not all(n.metric("tidings_messages_in_total") > b for n, b in zip(nodes, before,
                                                                                 strict=True)):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{SCENARIO}: a node read nothing in {timeout:g} s")
            time.sleep(0.2)
    finally:
        ctx.procs.stop(child)
    time.sleep(1.0)  # the warm publisher's last messages read before any measurement


def _base(ctx: Context, nodes: list[Node], seconds: float) -> list[float]:
    """Each node's CPU per second with no client and no traffic."""
    before = [node.child.cpu_seconds() for node in nodes]
    started = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - started
    return [(node.child.cpu_seconds() - b) / wall for node, b in zip(nodes, before, strict=True)]


def _read(ctx: Context, nodes: list[Node], count: int, base: list[float]) -> list[float]:
    """Each node's CPU-seconds per message it reads and routes to nobody."""
    counted = [node.metric("tidings_messages_in_total") for node in nodes]
    for node in nodes:
        os.killpg(node.child.pid, signal.SIGSTOP)
    try:
        child = _publish(ctx, nodes[0].server, f"{SCENARIO}-backlog", count=count, rate=0,
                         max_seconds=BACKLOG_MAX_SECONDS, channel="nobody.{i}", users=10_000,
                         seed=5)
        sent = int(_finish(ctx, child, BACKLOG_MAX_SECONDS + 120)["sent"])
        cpu = [node.child.cpu_seconds() for node in nodes]
        started = time.monotonic()
    finally:
        for node in nodes:
            os.killpg(node.child.pid, signal.SIGCONT)
    spent: list[float | None] = [None] * len(nodes)
    deadline = started + 120
    while any(s is None for s in spent):
        if time.monotonic() > deadline:
            raise RuntimeError(f"{SCENARIO}: the backlog of {sent} messages was not read in 120 s")
        time.sleep(0.25)
        for k, node in enumerate(nodes):
            if spent[k] is None and node.metric("tidings_messages_in_total") >= counted[k] + sent:
                elapsed = time.monotonic() - started
                spent[k] = node.child.cpu_seconds() - cpu[k] - base[k] * elapsed
    per_message = [s / sent for s in spent if s is not None]
    for node, value in zip(nodes, per_message, strict=True):
        ctx.log(f"{SCENARIO}: node {node.index} read {sent:,} messages at "
                f"{value * 1e6:.1f} us of CPU each")
    return per_message


def _idle(ctx: Context, nodes: list[Node], per_node: int, seconds: float,
          base: list[float]) -> list[float]:
    """Each node's CPU per connection-second above its base, with clients and no traffic."""
    with_clients = _base(ctx, nodes, seconds)
    return [max(0.0, (w - b) / per_node) for w, b in zip(with_clients, base, strict=True)]


def _publishers(ctx: Context, nodes: list[Node], size: Size, template: str,
                seed: int) -> tuple[list[dict[str, Any]], float]:
    """M/3 messages/s from each of three publishers for the check's time; their summaries
    and the longest publishing time."""
    share = size.rate / NODES
    count = round(share * size.seconds)
    per_node = size.connections // NODES
    started = time.monotonic()
    children = [
        _publish(ctx, node.server, f"{SCENARIO}-publisher{node.index}-{seed}", count=count,
                 rate=share, max_seconds=size.seconds * 2,
                 channel=template.format(k=node.index), users=per_node, seed=seed + node.index)
        for node in nodes
    ]
    summaries = [_finish(ctx, child, size.seconds * 2 + 60) for child in children]
    seconds = max(float(s.get("seconds", time.monotonic() - started)) for s in summaries)
    return summaries, seconds


def _stream(ctx: Context, nodes: list[Node], size: Size, read: list[float],
            quiet: list[float]) -> list[float]:
    """Each node's cores spent on a live stream for nobody beyond ``read`` per message."""
    counted = [node.metric("tidings_messages_in_total") for node in nodes]
    cpu = [node.child.cpu_seconds() for node in nodes]
    started = time.monotonic()
    summaries, seconds = _publishers(ctx, nodes, size, "x{k}.{{i}}", seed=31)
    sent = sum(int(summary["sent"]) for summary in summaries)
    done: list[float | None] = [None] * len(nodes)
    while any(d is None for d in done):
        if time.monotonic() - started > seconds + 120:
            raise RuntimeError(f"{SCENARIO}: the stream of {sent} messages was not read")
        for k, node in enumerate(nodes):
            if done[k] is None and node.metric("tidings_messages_in_total") >= counted[k] + sent:
                window = time.monotonic() - started
                spent = node.child.cpu_seconds() - cpu[k] - quiet[k] * window
                done[k] = max(0.0, spent / seconds - sent / seconds * read[k])
        time.sleep(0.25)
    return [d for d in done if d is not None]


def _costs(ctx: Context, read: list[float], idle: list[float], base: list[float],
           stream: list[float]) -> model.Costs:
    """The model's costs: this run's read, stream, idle and base (means over the nodes), the
    delivery costs of this run's scenarios 1 and 2 if they ran, else of bench/results.json."""
    published = model.RESULTS
    costs = model.load_costs(published if published.exists() else None, {})
    costs = model.costs_from_results(ctx.results.to_json(), base=costs)
    mean = {"read": sum(read) / len(read), "idle": sum(idle) / len(idle),
            "base": sum(base) / len(base), "stream": sum(stream) / len(stream)}
    sources = dict(costs.sources)
    for name in mean:
        sources[name] = f"this run, {SCENARIO}"
    # ``first`` was derived as (one delivery in scenario 2) - read: keep that sum, with this read.
    first = costs.first + costs.read - mean["read"] if "results.json" in costs.sources.get(
        "first", "") else costs.first
    costs = replace(costs, read=mean["read"], idle=mean["idle"], base=mean["base"],
                    stream=mean["stream"], first=max(0.0, first), sources=sources)
    figures = ctx.results
    figures.figure(SCENARIO, "costs", SYSTEM, "read_us", costs.read * 1e6, "us")
    figures.figure(SCENARIO, "costs", SYSTEM, "idle_us_per_conn_s", costs.idle * 1e6, "us")
    figures.figure(SCENARIO, "costs", SYSTEM, "base_cores", costs.base, "cores")
    figures.figure(SCENARIO, "costs", SYSTEM, "stream_cores", costs.stream, "cores")
    figures.figure(SCENARIO, "costs", SYSTEM, "first_us", costs.first * 1e6, "us")
    figures.figure(SCENARIO, "costs", SYSTEM, "extra_us", costs.extra * 1e6, "us")
    figures.figure(SCENARIO, "costs", SYSTEM, "read_ceiling", model.read_ceiling(costs), "/s")
    ctx.log(f"{SCENARIO}: costs " + ", ".join(
        f"{name} {getattr(costs, name):.3g} [{costs.sources.get(name)}]" for name in model.NAMES))
    return costs


def _check(ctx: Context, nodes: list[Node], loadgens: list[LoadGen], size: Size,
           costs: model.Costs) -> None:
    per_node = size.connections // NODES
    for loadgen in loadgens:
        loadgen.start_measure(round(size.rate * size.seconds), timeout=size.seconds + 60,
                              idle=3.0)
    cpu = [node.child.cpu_seconds() for node in nodes]
    started = time.monotonic()
    summaries, publish_seconds = _publishers(ctx, nodes, size, "n{k}.{{i}}", seed=11)
    received = [loadgen.result(size.seconds + 60) for loadgen in loadgens]
    window = time.monotonic() - started
    spent = [node.child.cpu_seconds() - c for node, c in zip(nodes, cpu, strict=True)]
    sent = sum(int(summary["sent"]) for summary in summaries)
    rate = sent / publish_seconds if publish_seconds else 0.0
    work = model.Workload(connections=per_node * NODES, rate=rate, recipients=1)
    load = model.node_load(costs, work, NODES)
    # Work for the publishing time; the connections and the process itself for the whole window.
    predicted = ((load.read_cpu + load.deliver_cpu) * publish_seconds
                 + (load.idle_cpu + load.base_cpu) * window)
    results = ctx.results
    lines = []
    for node, got, summary, cpu_s in zip(nodes, received, summaries, spent, strict=True):
        case = f"node {node.index}"
        delivered = int(got["count"])
        if delivered != int(summary["sent"]):
            results.problem(f"{SCENARIO}/{case}: {delivered} of {summary['sent']} messages "
                            f"delivered ({got['reason']})")
        results.figure(SCENARIO, case, SYSTEM, "cpu_s", cpu_s, "CPU-s")
        results.figure(SCENARIO, case, PREDICTED, "cpu_s", predicted, "CPU-s")
        results.figure(SCENARIO, case, SYSTEM, "cores", cpu_s / window, "cores")
        results.figure(SCENARIO, case, PREDICTED, "cores", predicted / window, "cores")
        results.figure(SCENARIO, case, SYSTEM, "deliveries", float(delivered))
        results.figure(SCENARIO, case, PREDICTED, "deliveries", load.deliveries * publish_seconds)
        results.row(SCENARIO, case, "CPU-seconds of the node over the check", ("cpu_s",),
                    better="lower", unit="CPU-s")
        results.row(SCENARIO, case, "deliveries to the node's clients", ("deliveries",))
        error = (cpu_s - predicted) / predicted if predicted else 0.0
        lines.append(f"node {node.index}: measured {cpu_s:.2f} CPU-s, predicted {predicted:.2f} "
                     f"({error:+.0%}), {delivered:,} deliveries")
    results.runs.append({
        "scenario": SCENARIO, "system": SYSTEM, "sent": sent, "rate": rate,
        "publish_seconds": publish_seconds, "window_s": window, "cpu_s": spent,
        "predicted_cpu_s": predicted,
        "costs": {name: getattr(costs, name) for name in model.NAMES},
        "sources": costs.sources,
    })
    ctx.log(f"{SCENARIO}: {sent:,} messages at {rate:,.0f}/s over {publish_seconds:.1f} s "
            f"(window {window:.1f} s)\n  " + "\n  ".join(lines))
