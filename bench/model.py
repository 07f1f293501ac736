"""How much CPU each gateway of a cluster needs, from measured costs (issue 17 part 5, ADR 0012).

    .venv/bin/python bench/model.py --nodes 3 --connections 30000 --rate 5000
    .venv/bin/python bench/model.py --nodes 3 --connections 30000 --rate 5000 --fanout-share 0.1
    .venv/bin/python bench/model.py --table        # a grid of nodes x connections x messages/s

Every gateway reads every message (ADR 0005, 0012) and delivers only to its own clients. So one
gateway process (a *node* here: a machine running ``serve --workers 4`` is four nodes, each
with its own feed) spends, per second of a stream of M messages/s:

    M x read                                every message: fetched, decoded up to its channel,
                                            routed (to nobody, mostly), in full batches
  + stream (while M > 0)                    the feed's wake-ups, polls, small batches and
                                            commits while messages flow
  + M_local x first                         a message with at least one local recipient: its
                                            frame is built and written
  + (D - M_local) x extra                   each further local recipient of the same message
  + C_node x idle                           each connection's keep-alives and timers
  + base                                    the process itself, with nothing to do (its feed's
                                            polls, its clocks)

with D the node's deliveries/s and C_node its connections (the cluster's, spread evenly). Adding
nodes divides D and C_node, never the read, stream and base terms: past ``(1 - base - stream) /
read`` messages/s (per core) no number of nodes carries the stream, and that is where the
cluster stops scaling.

``read`` is measured on a backlog (full batches: the cost when the stream is heavy, which sets
the ceiling); ``stream`` is what a live stream costs on top, measured at scenario 10's rate and
taken as constant. It is not: it follows the feed's wake-ups, not the messages (0.18 cores at
300 messages/s in the smoke size, where each message is its own batch; 0.06 at 3,000-4,400,
where many share one), so use the figure measured nearest the rate you size for.
The costs are measured, not guessed: ``read``, ``stream``, ``idle`` and ``base`` by scenario 10
(``bench/run.py --only cluster``), ``first`` from scenario 2 (many channels through Kafka: one
recipient per message, so one delivery costs ``read + first``), ``extra`` from scenario 1 (the
fan-out through Kafka at 1,000 connections: a delivery there costs about ``extra``). They are
read from ``bench/results.json`` (or ``--results``) when it holds them; flags override, and the
figures of the last measurement on this project's machine stand in for what is missing (the
output names the source of each). Pure functions below; the command line is the thin part at
the end.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results.json"

CLUSTER = "10-cluster"
"""Scenario 10's name in results.json (the cluster check, ``bench/scenarios/cluster.py``)."""
CHANNELS = "2-many-channels"
FANOUT = "1-fanout-kafka"
FANOUT_CASE = "1,000 connections"
KAFKA = "tidings-kafka"
NAMES = ("read", "first", "extra", "idle", "base", "stream")
CORES = ("base", "stream")
"""The costs counted in cores (CPU-seconds per second); the others in CPU-seconds per unit."""


@dataclass(frozen=True)
class Costs:
    """CPU-seconds of one gateway process (one core) per unit of work."""

    read: float
    """Per message of the stream, whether or not a local client holds its channel."""
    first: float
    """Added per message that has at least one local recipient (its frame, its first write)."""
    extra: float
    """Added per further local recipient of the same message."""
    idle: float
    """Per connection per second, with no traffic (keep-alives, timers)."""
    base: float = 0.0
    """Per second, with no connection and no traffic (the feed's polls, the clocks)."""
    stream: float = 0.0
    """Per second while messages flow, beyond ``read`` per message (wake-ups, small batches,
    commits): what a live stream costs over a backlog."""
    sources: dict[str, str] = field(default_factory=dict, compare=False)
    """Where each figure came from (results.json, a flag, or the built-in default)."""

    def __post_init__(self) -> None:
        for name in NAMES:
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"the {name} cost must be a finite number >= 0, got {value!r}")


DEFAULTS = Costs(
    read=11.3e-6,
    first=1 / 22_222 - 11.3e-6,
    extra=1 / 1_224_490,
    idle=14.5e-6,
    base=0.014,
    stream=0.065,
    sources={name: "built-in default (ADR 0012)" for name in NAMES},
)
"""The figures ADR 0012 quotes (scenario 10 in full size, scenarios 1 and 2 of the published
run, on this project's 2-core machine); results.json's replace them."""


@dataclass(frozen=True)
class Workload:
    """The cluster's traffic: C connections, M messages/s, and who each message goes to.

    ``fanout_share`` of the messages go to every connection (a channel all clients hold); the
    others to ``recipients`` connections each, spread at random over the nodes.
    """

    connections: int
    rate: float
    recipients: float = 1.0
    fanout_share: float = 0.0

    def __post_init__(self) -> None:
        if self.connections < 0:
            raise ValueError(f"connections must be >= 0, got {self.connections}")
        if not (math.isfinite(self.rate) and self.rate >= 0):
            raise ValueError(f"the rate must be a finite number >= 0, got {self.rate!r}")
        if not (math.isfinite(self.recipients) and self.recipients >= 0):
            raise ValueError(f"recipients per message must be >= 0, got {self.recipients!r}")
        if self.connections and self.recipients > self.connections:
            raise ValueError(f"{self.recipients:g} recipients per message but only "
                             f"{self.connections} connections")
        if not 0.0 <= self.fanout_share <= 1.0:
            raise ValueError(f"the fan-out share must be between 0 and 1, got "
                             f"{self.fanout_share!r}")


@dataclass(frozen=True)
class NodeLoad:
    """One node's share of the work and the CPU it takes (in cores: CPU-seconds per second)."""

    nodes: int
    connections: float
    deliveries: float
    """Deliveries/s on this node."""
    local_messages: float
    """Messages/s with at least one recipient on this node."""
    read_cpu: float
    deliver_cpu: float
    idle_cpu: float
    base_cpu: float

    @property
    def cpu(self) -> float:
        return self.read_cpu + self.deliver_cpu + self.idle_cpu + self.base_cpu


def node_load(costs: Costs, work: Workload, nodes: int) -> NodeLoad:
    """What each of ``nodes`` gateways does and spends, connections spread evenly."""
    if nodes < 1:
        raise ValueError(f"a cluster has at least one node, got {nodes}")
    per_node = work.connections / nodes
    targeted = work.rate * (1.0 - work.fanout_share)
    broadcast = work.rate * work.fanout_share
    # A targeted message's recipients land on this node independently, each with 1/nodes; with
    # fewer than one recipient a message on average, a message reaches at most one connection.
    reaches = min(1.0 - (1.0 - 1.0 / nodes) ** work.recipients, work.recipients / nodes)
    local = targeted * reaches + (broadcast if per_node > 0 else 0.0)
    deliveries = targeted * work.recipients / nodes + broadcast * per_node
    return NodeLoad(
        nodes=nodes,
        connections=per_node,
        deliveries=deliveries,
        local_messages=local,
        read_cpu=work.rate * costs.read + (costs.stream if work.rate > 0 else 0.0),
        deliver_cpu=local * costs.first + max(0.0, deliveries - local) * costs.extra,
        idle_cpu=per_node * costs.idle,
        base_cpu=costs.base,
    )


def read_ceiling(costs: Costs, budget: float = 1.0) -> float:
    """Messages/s past which no number of nodes keeps up: what no node sheds by adding nodes
    (reading the stream, the process itself) fills ``budget`` cores."""
    room = max(0.0, budget - costs.base - costs.stream)
    return math.inf if costs.read == 0 else room / costs.read


def nodes_needed(costs: Costs, work: Workload, budget: float = 1.0,
                 limit: int = 100_000) -> int | None:
    """The fewest nodes whose CPU each stays within ``budget`` cores; None when none does.

    None means the stream itself is too much: each node's CPU falls towards ``rate x read`` as
    nodes are added, so past the read ceiling more nodes never help (or beyond ``limit``).
    """
    fixed = node_load(costs, work, limit)
    if fixed.read_cpu + fixed.base_cpu >= budget:
        return None
    low, high = 1, 1
    while node_load(costs, work, high).cpu > budget:
        if high >= limit:
            return None
        low, high = high, min(limit, high * 2)
    while low < high:  # CPU per node does not rise with nodes: the first that fits
        middle = (low + high) // 2
        if node_load(costs, work, middle).cpu <= budget:
            high = middle
        else:
            low = middle + 1
    return high


def costs_from_results(results: dict[str, object], base: Costs = DEFAULTS) -> Costs:
    """``base`` with each figure results.json holds (a bench run's output) put in its place."""
    figures = results.get("figures", [])
    found: dict[tuple[str, str, str, str], float] = {}
    if isinstance(figures, list):
        for item in figures:
            if isinstance(item, dict):
                key = (str(item.get("scenario")), str(item.get("case")),
                       str(item.get("system")), str(item.get("metric")))
                value = item.get("value")
                if isinstance(value, int | float) and value > 0:
                    found[key] = float(value)
    costs = base
    sources = dict(base.sources)
    read = found.get((CLUSTER, "costs", KAFKA, "read_us"))
    if read is not None:
        costs = replace(costs, read=read / 1e6)
        sources["read"] = f"results.json, {CLUSTER}"
    idle = found.get((CLUSTER, "costs", KAFKA, "idle_us_per_conn_s"))
    if idle is not None:
        costs = replace(costs, idle=idle / 1e6)
        sources["idle"] = f"results.json, {CLUSTER}"
    base_cores = found.get((CLUSTER, "costs", KAFKA, "base_cores"))
    if base_cores is not None:
        costs = replace(costs, base=base_cores)
        sources["base"] = f"results.json, {CLUSTER}"
    stream_cores = found.get((CLUSTER, "costs", KAFKA, "stream_cores"))
    if stream_cores is not None:
        costs = replace(costs, stream=stream_cores)
        sources["stream"] = f"results.json, {CLUSTER}"
    one = next((v for (s, _, system, metric), v in found.items()
                if s == CHANNELS and system == KAFKA and metric == "sat_per_cpu_s"), None)
    if one is not None:
        costs = replace(costs, first=max(0.0, 1 / one - costs.read))
        sources["first"] = f"results.json, {CHANNELS} ({one:,.0f} deliveries/CPU-s) - read"
    fan = found.get((FANOUT, FANOUT_CASE, KAFKA, "sat_per_cpu_s"))
    if fan is not None:
        costs = replace(costs, extra=1 / fan)
        sources["extra"] = f"results.json, {FANOUT} {FANOUT_CASE} ({fan:,.0f}/CPU-s)"
    # A run of scenario 10 alone records the delivery costs it used (from the published run).
    first = found.get((CLUSTER, "costs", KAFKA, "first_us"))
    if one is None and first is not None:
        costs = replace(costs, first=first / 1e6)
        sources["first"] = f"results.json, {CLUSTER} (as it used it)"
    extra = found.get((CLUSTER, "costs", KAFKA, "extra_us"))
    if fan is None and extra is not None:
        costs = replace(costs, extra=extra / 1e6)
        sources["extra"] = f"results.json, {CLUSTER} (as it used it)"
    return replace(costs, sources=sources)


def load_costs(path: Path | None, overrides: dict[str, float | None]) -> Costs:
    """The costs of ``path`` (when it exists) with the flags' overrides (microseconds; cores
    for ``base`` and ``stream``)."""
    costs = DEFAULTS
    if path is not None and path.exists():
        costs = costs_from_results(json.loads(path.read_text()))
    sources = dict(costs.sources)
    figures = {name: float(getattr(costs, name)) for name in NAMES}
    for name, value in overrides.items():
        if value is not None:
            figures[name] = value if name in CORES else value / 1e6
            sources[name] = "flag"
    return Costs(figures["read"], figures["first"], figures["extra"], figures["idle"],
                 figures["base"], figures["stream"], sources)


def describe(costs: Costs, work: Workload, nodes: int, budget: float) -> str:
    load = node_load(costs, work, nodes)
    needed = nodes_needed(costs, work, budget)
    ceiling = read_ceiling(costs, budget)
    lines = [
        f"{nodes} node(s), {work.connections:,} connections, {work.rate:,g} messages/s "
        f"({work.recipients:g} recipient(s) each"
        + (f", {work.fanout_share:.0%} to every connection)" if work.fanout_share else ")"),
        f"per node: {load.connections:,.0f} connections, {load.deliveries:,.0f} deliveries/s, "
        f"{load.local_messages:,.0f} messages/s with a local recipient",
        f"CPU per node: {load.cpu:.3f} cores = read and stream {load.read_cpu:.3f} + deliver "
        f"{load.deliver_cpu:.3f} + idle {load.idle_cpu:.3f} + base {load.base_cpu:.3f}",
        f"read ceiling: {ceiling:,.0f} messages/s fill {budget:g} core(s) per node with reading "
        "(and the base) alone, whatever the number of nodes",
        "nodes needed within the budget: "
        + (str(needed) if needed is not None else "none (the stream is past the read ceiling)"),
        "costs (microseconds of CPU; base and stream in cores): " + ", ".join(
            f"{name} {getattr(costs, name) * (1 if name in CORES else 1e6):.3f} "
            f"[{costs.sources.get(name, '?')}]" for name in NAMES),
    ]
    return "\n".join(lines)


def table(costs: Costs, nodes: Sequence[int], connections: Sequence[int],
          rates: Sequence[float], recipients: float, fanout_share: float,
          budget: float) -> str:
    """CPU per node (cores) for each cell; ``*`` marks cells past the budget."""
    out = [f"CPU cores per node (read + stream + deliver + idle + base); * over {budget:g} "
           "core(s); "
           f"{recipients:g} recipient(s) per message, {fanout_share:.0%} to everyone; "
           f"read ceiling {read_ceiling(costs, budget):,.0f} messages/s"]
    header = f"{'connections':>12} {'msg/s':>8} " + " ".join(f"{f'N={n}':>9}" for n in nodes)
    out.append(header)
    for c in connections:
        for m in rates:
            work = Workload(c, m, min(recipients, c) if c else 0, fanout_share)
            cells = []
            for n in nodes:
                cpu = node_load(costs, work, n).cpu
                cells.append(f"{cpu:8.3f}{'*' if cpu > budget else ' '}")
            out.append(f"{c:>12,} {m:>8,g} " + " ".join(cells))
    return "\n".join(out)


def _ints(text: str) -> list[int]:
    return [int(part) for part in text.split(",") if part.strip()]


def _floats(text: str) -> list[float]:
    return [float(part) for part in text.split(",") if part.strip()]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/model.py", description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--nodes", type=int, default=3, help="gateway processes (default 3)")
    parser.add_argument("--connections", type=int, default=30_000, help="in the whole cluster")
    parser.add_argument("--rate", type=float, default=5_000, help="messages/s, whole stream")
    parser.add_argument("--recipients-per-message", type=float, default=1.0, metavar="R",
                        help="connections each message goes to (default 1)")
    parser.add_argument("--fanout-share", type=float, default=0.0, metavar="S",
                        help="share of the messages that go to every connection (default 0)")
    parser.add_argument("--budget", type=float, default=1.0, metavar="CORES",
                        help="CPU one node may use: 1 core per gateway process (default 1)")
    parser.add_argument("--table", action="store_true", help="print a grid instead")
    parser.add_argument("--grid-nodes", type=_ints, default=[1, 2, 3, 5, 10, 20])
    parser.add_argument("--grid-connections", type=_ints, default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--grid-rates", type=_floats, default=[1_000, 10_000, 40_000, 80_000])
    parser.add_argument("--results", type=Path, default=RESULTS,
                        help="bench results to take the costs from (default bench/results.json)")
    for name in ("read", "first", "extra", "idle"):
        parser.add_argument(f"--{name}-us", type=float, metavar="MICROSECONDS",
                            help=f"override the {name} cost (microseconds of CPU"
                            + (" per connection-second)" if name == "idle" else ")"))
    parser.add_argument("--base-cores", type=float, metavar="CORES",
                        help="override the base cost (cores a node uses with nothing to do)")
    parser.add_argument("--stream-cores", type=float, metavar="CORES",
                        help="override the stream cost (cores a live stream adds)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        overrides = {name: getattr(args, f"{name}_{'cores' if name in CORES else 'us'}")
                     for name in NAMES}
        costs = load_costs(args.results, overrides)
        if args.table:
            print(table(costs, args.grid_nodes, args.grid_connections, args.grid_rates,
                        args.recipients_per_message, args.fanout_share, args.budget))
        else:
            work = Workload(args.connections, args.rate, args.recipients_per_message,
                            args.fanout_share)
            print(describe(costs, work, args.nodes, args.budget))
    except ValueError as exc:
        print(f"bench/model.py: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
