"""The outputs of a run: the terminal table, results.json, docs/benchmarks.md and its chart.

    python -m bench.report [RESULTS_JSON]   re-render the markdown and chart from a results file
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .core import LABELS, SPREAD_FLAG, Results, Row, median, spread, unsteady
from .environment import ROOT

TIE = 0.05
"""Ratios within 5 % of 1 favour neither side."""

DASH = "\u2013"
"""Between the lowest and the highest run (an en dash)."""
UNSTEADY = "†"
"""Marks a figure whose runs strayed more than ``SPREAD_FLAG`` from their median."""


@dataclass
class Line:
    scenario: str
    case: str
    label: str
    tidings: str
    tidings_cell: str
    peer: str
    peer_cell: str
    ratio: float | None
    favours: str
    notes: list[str]
    runs: int = 1
    """The most runs behind any figure of the line."""
    unsteady: bool = False
    """Some figure of the line strayed more than ``SPREAD_FLAG`` from its median."""
    ratio_name: str | None = None
    """What the ratio is when the scenario is not a contest (``"measured / model"``); None:
    tidings / peer, and ``favours`` says which side the figure is better for."""


def load(path: Path) -> Results:
    raw = json.loads(path.read_text())
    results = Results(
        meta=raw["meta"], figures=raw["figures"], runs=raw["runs"],
        distributions=raw["distributions"], problems=raw["problems"],
        scenarios=raw["scenarios"], notes=raw.get("notes", {}),
    )
    results.rows = [Row(**{**row, "metrics": tuple(row["metrics"])}) for row in raw["rows"]]
    results.pairs = {name: [(a, b) for a, b in pairs] for name, pairs in raw["pairs"].items()}
    return results


def fmt(value: float | None, unit: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if unit in ("/s", "msg/s", "/CPU-s"):
        return f"{value:,.0f}"
    if unit == "ms":
        if value >= 100:
            return f"{value:,.0f}"
        return f"{value:.3g}" if value >= 1 else f"{value:.2f}"
    if unit in ("KiB", "MiB"):
        return f"{value:,.1f}"
    if abs(value) >= 1000:  # a count: 30,000, not 3e+04
        return f"{value:,.0f}"
    return f"{value:.3g}"


def cell(values: list[float], unit: str) -> str:
    """A figure's median, with the spread of its runs (min-max) when there are several, and
    ``UNSTEADY`` when some run strays more than ``SPREAD_FLAG`` from the median."""
    middle = median(values)
    text = fmt(middle, unit)
    bounds = spread(values)
    if bounds is not None:
        text += f" ({fmt(bounds[0], unit)}{DASH}{fmt(bounds[1], unit)})"
    if unsteady(values):
        text += f" {UNSTEADY}"
    return text


def _backlog(results: Results, row: Row, systems: tuple[str, str]) -> bool:
    """Whether a saturation latency row covers a backlog run (server stopped while publishing),
    whose latencies count the stop and mean nothing."""
    return row.ratio_metric.startswith("sat_p") and any(
        run.get("backlog") and run.get("scenario") == row.scenario
        and run.get("system") in systems and str(run.get("case", "")).startswith(row.case)
        for run in results.runs
    )


def scenario_order(name: str) -> tuple[int, int, str]:
    """Sort key of a scenario: its leading number (``9-...`` before ``10-...``), then its name;
    a name without a number last."""
    number = name.split("-", 1)[0]
    return (0, int(number), name) if number.isdigit() else (1, 0, name)


def ratio_name(results: Results, scenario: str) -> str | None:
    """The scenario's own name for its ratio when it is not a contest (``Results.scenarios``)."""
    name = results.scenarios.get(scenario, {}).get("ratio")
    return str(name) if name else None


def lines(results: Results) -> list[Line]:
    """The table's lines, scenario by scenario in ``scenario_order``, rows in recorded order."""
    out: list[Line] = []
    for row in sorted(results.rows, key=lambda row: scenario_order(row.scenario)):
        versus = ratio_name(results, row.scenario)
        for tidings, peer in results.pairs.get(row.scenario, []):
            if _backlog(results, row, (tidings, peer)):
                continue
            mine = [results.values(row.scenario, row.case, tidings, m) for m in row.metrics]
            theirs = [results.values(row.scenario, row.case, peer, m) for m in row.metrics]
            if not any(mine) or not any(theirs):
                continue
            a = results.value(row.scenario, row.case, tidings, row.ratio_metric)
            b = results.value(row.scenario, row.case, peer, row.ratio_metric)
            ratio = a / b if a is not None and b else None
            favours = "-"
            if versus is None and ratio is not None and abs(ratio - 1) > TIE:
                tidings_better = ratio > 1 if row.better == "higher" else ratio < 1
                favours = "tidings" if tidings_better else "peer"
            notes = [f"{LABELS.get(s, s)}: {text}" for s in (tidings, peer)
                     for text in results.notes_for(row.scenario, row.case, s)]
            out.append(Line(
                row.scenario, row.case, row.label, tidings,
                " / ".join(cell(v, row.unit) for v in mine), peer,
                " / ".join(cell(v, row.unit) for v in theirs), ratio, favours, notes,
                runs=max(len(v) for v in mine + theirs),
                unsteady=any(unsteady(v) for v in mine + theirs), ratio_name=versus,
            ))
    return out


def terminal_table(results: Results) -> str:
    header = ["scenario", "case", "metric", "tidings", "value", "peer", "value", "ratio",
              "favours"]
    body = [
        [line.scenario, line.case, line.label + (" *" if line.notes else ""),
         LABELS.get(line.tidings, line.tidings), line.tidings_cell,
         LABELS.get(line.peer, line.peer), line.peer_cell,
         "-" if line.ratio is None else f"{line.ratio:.2f}x",
         line.favours if line.ratio_name is None else f"- (ratio {line.ratio_name})"]
        for line in lines(results)
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *body, strict=False)]
    rule = "  ".join("-" * width for width in widths)
    text = ["  ".join(cell.ljust(width) for cell, width in zip(header, widths, strict=True)), rule]
    text += ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
             for row in body]
    notes = sorted({note for line in lines(results) for note in line.notes})
    text += [f"* {note}" for note in notes]
    text += [f"! {problem}" for problem in results.problems]
    text += ["", "Targets:"] + [
        f"  [{'met' if met else 'MISSED' if met is not None else 'n/a'}] {target}: {measured}"
        for target, measured, met in targets(results)
    ]
    return "\n".join(text)


def _values(results: Results, scenario: str, case_prefix: str, system: str,
            metric: str) -> list[float]:
    """Every run of a figure of the case named ``case_prefix``, or else of the first case
    starting with it (``1,000 connections`` is not ``1,000 connections, 1 message per request``)."""
    cases = [item["case"] for item in results.figures
             if item["scenario"] == scenario and item["case"].startswith(case_prefix)
             and item["system"] == system and item["metric"] == metric]
    case = case_prefix if case_prefix in cases else next(iter(cases), None)
    return [] if case is None else results.values(scenario, case, system, metric)


def _value(results: Results, scenario: str, case_prefix: str, system: str,
           metric: str) -> float | None:
    """The median of ``_values``."""
    return median(_values(results, scenario, case_prefix, system, metric))


def _runs(values: list[float], unit: str) -> str:
    """`` (runs A-B, n runs)`` after a median of several runs; nothing for one run."""
    bounds = spread(values)
    if bounds is None:
        return ""
    flag = f", {UNSTEADY} over ±{SPREAD_FLAG:.0%}" if unsteady(values) else ""
    return f" (runs {fmt(bounds[0], unit)}{DASH}{fmt(bounds[1], unit)}, {len(values)} runs{flag})"


def targets(results: Results) -> list[tuple[str, str, bool | None]]:
    """The issue's targets: (target, what was measured, met? / None when not measured)."""
    out: list[tuple[str, str, bool | None]] = []

    def check(target: str, value: float | None, text: str, ok: bool | None) -> None:
        out.append((target, "not measured" if value is None else text,
                    None if value is None else ok))

    def compare(scenario: str, case: str, tidings: str, peer: str, metric: str,
                unit: str) -> tuple[float | None, str]:
        """The ratio of the medians, and the text: ratio, both medians and their runs."""
        mine = _values(results, scenario, case, tidings, metric)
        theirs = _values(results, scenario, case, peer, metric)
        a, b = median(mine), median(theirs)
        ratio = a / b if a is not None and b else None
        text = "" if ratio is None else (
            f"{ratio:.2f}x (medians {fmt(a, unit)}{_runs(mine, unit)} vs "
            f"{fmt(b, unit)}{_runs(theirs, unit)} {unit})")
        return ratio, text

    for scenario, tidings, peer in (("6-fanout-memory", "tidings-memory", "socketio"),
                                    ("1-fanout-kafka", "tidings-kafka", "socketio-kafka")):
        ratio, text = compare(scenario, "1,000 connections", tidings, peer, "sat_rate", "/s")
        check(f"fan-out >= 3x {LABELS[peer]} at 1,000 connections ({LABELS[tidings]})", ratio,
              text.replace(" /s)", " deliveries/s)"), ratio is not None and ratio >= 3)
        rates = _values(results, scenario, "1,000 connections", tidings, "sat_rate")
        mine = median(rates)
        check(f">= 100,000 deliveries/s per core at 1,000 connections ({LABELS[tidings]}, "
              "gateway pinned to one core)", mine,
              f"{fmt(mine, '/s')} deliveries/s{_runs(rates, '/s')}",
              mine is not None and mine >= 100_000)
    for tidings, raw, what in (
        ("tidings-sync", "kafka-python-sync", "broadcast() >= 0.9x raw kafka-python"),
        ("tidings-nowait", "kafka-python", "broadcast_nowait() >= 0.9x raw kafka-python"),
    ):
        ratio, text = compare("3-publish", "", tidings, raw, "rate", "msg/s")
        check(what, ratio, text, ratio is not None and ratio >= 0.9)
    ratio, text = compare("4-consume", "", "tidings", "kafka-python-feed", "rate", "msg/s")
    check("consumption >= 0.9x raw kafka-python, like for like (kafka-python polling 2,000 and "
          "decoding up to the channel, as tidings' feed)", ratio, text,
          ratio is not None and ratio >= 0.9)
    ratio, text = compare("4-consume", "", "tidings", "kafka-python-feed", "per_cpu_s", "/CPU-s")
    check("consumption >= 0.9x raw kafka-python like for like, per CPU-second of the consumer "
          "(less disturbed by a busy machine)", ratio, text, ratio is not None and ratio >= 0.9)
    plan = results.meta.get("plan", {})
    connections = plan.get("channels_connections", 0)
    clients = min(plan.get("channels_latency_clients", 0), connections)
    where = (f"at {plan.get('channels_latency_rate', 0):,} msg/s to {clients:,} of "
             f"{connections:,} connected clients")
    for system, limit in (("tidings-memory", 5.0), ("tidings-kafka", 25.0)):
        p99s = _values(results, "2-many-channels", "", system, "lat_p99_ms")
        p99 = median(p99s)
        check(f"p99 < {limit:g} ms at 1,000 msg/s to 1,000 clients ({LABELS[system]})", p99,
              f"p99 {fmt(p99, 'ms')} ms (median){_runs(p99s, 'ms')} {where}",
              p99 is not None and p99 < limit)
    kibs = _values(results, "5-memory", "", "tidings-memory", "kib_per_connection")
    kib = median(kibs)
    connections = next((r["connections"] for r in results.runs
                        if r.get("scenario") == "5-memory"), None)
    check("< 20 KB per idle connection with 10,000 connections", kib,
          f"{kib * 1.024:.1f} KB ({kib:.1f} KiB{_runs(kibs, 'KiB')}) with {connections:,} "
          "connections" if kib else "", kib is not None and kib * 1024 < 20_000)
    return out


# -- Markdown -------------------------------------------------------------------------------


def markdown(results: Results, chart: str | None) -> str:
    meta = results.meta
    machine = meta.get("machine", {})
    packages = machine.get("packages", {})
    out = [
        "# Benchmarks",
        "",
        f"Generated by `bench/run.py` ({meta.get('mode')} mode) on {meta.get('finished')}, in "
        f"{meta.get('minutes', 0):.0f} minutes; do not edit by hand, re-run it. Every scenario "
        "runs tidings and each peer on the same machine, in the same run, with the same clients "
        "and message sizes. Each figure is the median of its runs, followed by the lowest and "
        f"highest run in brackets when there were several; {UNSTEADY} marks a figure some run "
        f"of which strayed more than ±{SPREAD_FLAG:.0%} from the median (read it as noise, not "
        "as a result). The ratio is tidings / peer on the medians of the metric named; "
        "*favours* says which side the figure is better for (within 5 %: neither). A scenario "
        "that is no contest (the cluster against its model) names its own columns and ratio "
        "(measured / model) and favours neither.",
        "",
        "## Targets (issue 6)",
        "",
        "| target | measured | |",
        "|---|---|---|",
    ]
    for target, measured, met in targets(results):
        verdict = "met" if met else ("**missed**" if met is not None else "not measured")
        out.append(f"| {target} | {measured} | {verdict} |")
    out += ["", "## Reproduce", "", "```sh",
            "scripts/setup --test                   # the venv with tidings",
            "scripts/kafka start                    # or let bench/run.py start it",
            ".venv/bin/python bench/run.py --quick  # a few minutes; results in bench/.work/",
            ".venv/bin/python bench/run.py          # full: bench/results.json, this page, "
            "the chart",
            ".venv/bin/python bench/run.py --smoke  # CI: tiny sizes, asserts nothing about speed",
            "```", "",
            "The harness installs its peers from `bench/requirements.txt` into the running venv "
            "(pinned; pip runs only when a pin is unmet) and builds the Go load generator "
            "(`bench/loadgen`, `go build`). `--only SCENARIO,...` runs some scenarios; "
            "`--profile` attaches py-spy to the tidings gateway during the 1,000-connection "
            "fan-out and the many-channels saturation phases (profiles in the run's folder "
            "under `bench/.work/runs/`).", "",
            "## Machine", "",
            f"- CPU: {machine.get('cpu')}, {machine.get('cores')} cores; "
            f"RAM {machine.get('memory_gib')} GiB; open-files limit "
            f"{machine.get('open_files_limit')}",
            f"- Kernel {machine.get('kernel')} ({machine.get('os')}); "
            f"{machine.get('implementation')} {machine.get('python')}; {machine.get('go')}; "
            f"Apache Kafka {machine.get('kafka')} (single KRaft node on 127.0.0.1, "
            "`scripts/kafka`)",
            f"- tidings {packages.get('tidings')} at commit {machine.get('git_commit')}"
            f"{' plus uncommitted changes in src/' if machine.get('git_dirty') else ''} "
            f"(every process of the run imported one copy of src/, digest "
            f"{machine.get('source_digest', '?')}); "
            + ", ".join(f"{name} {version}" for name, version in packages.items()
                        if name != "tidings")
            + f"; gorilla/websocket {machine.get('gorilla_websocket')} (load generator)",
            "",
            "## Method", "",
            f"- **Cores.** {meta.get('pinning')}",
            f"- **Runs.** The systems of a case run interleaved, one after the other, "
            f"{meta.get('plan', {}).get('repeats', 1)} time(s) each in this {meta.get('mode')} "
            "run (full 3, quick 2, smoke 1), in an order rotated one place each run (A, B, C, then "
            "B, C, A...), so that no system always goes first against a freshly started Kafka or "
            "a cold cache; each run starts its server afresh (new topics and consumer group for "
            "Kafka) and a run that fails is retried once. Tables show the median with the "
            "spread (lowest-highest run), ratios are ratios of medians, targets are judged on "
            "medians; every run of every figure is in results.json (`figures`, with its `run`). "
            "The latency chart draws the last run's distribution.",
            "- **Clients.** One Go program (`bench/loadgen`, gorilla/websocket, GOMAXPROCS=1) "
            "opens the N connections (64 at a time), speaks the tidings protocol (connect, "
            "`connected`, `subscribe`, `subscribed`, count `event` frames) or Socket.IO v5 over "
            "Engine.IO v4 websocket (open packet, `40`, `join` with an acknowledgement, answer "
            "pings, count `bench` events) or the Pusher protocol 7 as pusher-js does "
            "(`/app/{key}?protocol=7&client=js&version=8.4.0`, `pusher:connection_established`, "
            "`pusher:subscribe` to the public channel, `pusher_internal:subscription_succeeded`, "
            "answer `pusher:ping`, count `bench` events, whose data is a JSON string), and "
            "stamps each delivery on arrival. Each tidings or Pusher client sends a keep-alive "
            "ping every 20 s, the clients' pings spread evenly over that interval (as clients "
            "that connected at different times send them).",
            "- **Latency** is arrival time minus the publish time carried in the message data "
            "(`ts`, ns since the epoch, taken by the publisher just before it hands the message "
            "over; same machine clock). Quantiles come from a log histogram with 1.1 % buckets.",
            "- **Messages.** The same data for every system: `{\"ts\", \"seq\", \"channel\", "
            "\"body\"}`, about 145 bytes of JSON. On the wire a tidings event frame (the envelope: "
            "id, type, channel, event, data, timestamp, position) is about 330 bytes, a Socket.IO "
            "frame (`42[\"bench\",{...}]`) about 160, a Pusher event (event, channel, and the "
            "data as an escaped JSON string) about 210.",
            "- **Publishers** are Python processes: tidings memory broker `POST /broadcast` "
            "(lists of up to 100, `REALTIME_API_KEY`), tidings Kafka `tidings.broadcast_nowait`, "
            "Socket.IO in-process `POST /emit` on the peer server (lists of up to 100), Socket.IO "
            "Kafka `socketio.KafkaManager(write_only=True).emit` from 8 threads (each emit waits "
            "for Kafka). A full queue (HTTP 503, BrokerOverloaded) is waited out and retried.",
            "- **Saturation** phases publish a fixed number of messages flat out; deliveries/s "
            "runs from the first message's publish stamp to the last delivery, and their latency "
            "is mostly time spent queued, so it depends on the burst size (the same for every "
            "system). Where one message is one delivery (many channels) a Python publisher "
            "cannot outrun a Kafka gateway, so the Kafka servers are stopped (SIGSTOP) while the "
            "messages are published and resumed to deliver the backlog: deliveries/s runs from "
            "first to last delivery, and no latency is reported for those runs.",
            "- **Deliveries per CPU-second** is deliveries divided by the CPU time (user + "
            "system, all threads, /proc/PID/stat) the server used over the phase: a per-core "
            "figure that the client side cannot limit. The single-core Go load generator reads "
            "at most a few hundred thousand frames/s; where a server goes faster, its "
            "deliveries/s is the client's ceiling and the per-CPU-second figure is the one to "
            "read (such cases are footnoted).",
            "- **Servers.** tidings: `tidings serve --port P --node-id bench-...` with "
            "`REALTIME_QUEUE_SIZE=1000000` (so saturation runs do not cut slow clients), a run-"
            "unique `KAFKA_TOPIC_PREFIX` and consumer group, default Kafka client settings; "
            "`tidings serve` sets its own interpreter options once started (the garbage "
            "collector's young generations collected every 50 ms, ADR 0015; a 0.2 ms GIL switch "
            "interval, ADR 0014); the peers run with CPython's defaults. "
            "python-socketio: `bench/peers/socketio_server.py` in two in-process modes: "
            "**python-socketio (gevent)**, the main peer row, `socketio.Server(async_mode="
            "'gevent')` on gevent's WSGI server with gevent-websocket (monkey-patched, as its "
            "deployment docs show), its fastest mode for fan-out in one process: an emit to a "
            "room encodes the packet once and queues it to each client's writer greenlet "
            "(TCP_NODELAY set on its connections, as aiohttp and trio set it: gevent's WSGI "
            "handler writes a response's headers and body in two sends, and without it each "
            "`POST /emit` waited 40 ms for a delayed ACK); eventlet and `async_mode='threading'` "
            "(a thread per connection) were not tried; and "
            "**python-socketio (asyncio)**, `AsyncServer` on aiohttp, the asyncio way to run it, "
            "which spends a task per recipient per message (its slowest mode, kept as a second "
            "row). Both take the publisher's `POST /emit` (lists of up to 100) on their own "
            "server, one request at a time from one publisher, as tidings takes `POST "
            "/broadcast`. Through Kafka: `socketio.Server(async_mode='gevent', "
            "client_manager=socketio.KafkaManager(...))`, the same gevent server "
            "(python-socketio has no asyncio Kafka manager). All with Engine.IO's "
            "`ping_timeout=60` (default 20) so that pausing the server for a backlog "
            "measurement does not make it drop its own clients.",
            "- **Consume from Kafka, like for like.** tidings' feed polls up to 2,000 records "
            "and decodes each envelope only as far as its channel; raw kafka-python is shown "
            "both ways: *as tidings' feed* (2,000 a poll, orjson up to the channel, asynchronous "
            "commits: the target's comparison) and *as an app* (kafka-python's default 500 a "
            "poll, json.loads of every value, a synchronous commit after each poll).",
            "- **python-socketio's KafkaManager** passes kafka-python a `str` value, which "
            "kafka-python 3 refuses (`TypeError: Unsupported type for serialized value`); its "
            "publisher is given KafkaManager's documented `json=` option with a `dumps` that "
            "returns bytes. Its consumer has no group and starts at the end of the topic; the "
            "topic is created up front (this Kafka does not create topics on first use) and each "
            "run warms up until deliveries flow.",
            "- **Timed tests do not belong in the test suite**: nothing here asserts a speed; "
            "`--smoke` checks only that every scenario runs.",
            ""]
    if chart:
        out += ["## Chart", "", f"![latency distributions and throughput]({chart})", ""]
    for scenario in sorted(results.scenarios, key=scenario_order):
        about = results.scenarios[scenario]
        versus = ratio_name(results, scenario) or "tidings / peer"
        mine, _, theirs = versus.partition(" / ")
        out += [f"## {scenario.split('-', 1)[0]}. {about['title']}", "", about["about"], "",
                f"| case | metric | {mine} | | {theirs} | | {versus} (medians) | favours |",
                "|---|---|---|--:|---|--:|--:|---|"]
        notes: list[str] = []
        for line in lines(results):
            if line.scenario != scenario:
                continue
            marks = ""
            for note in line.notes:
                if note not in notes:
                    notes.append(note)
                marks += f" [{notes.index(note) + 1}]"
            ratio = "-" if line.ratio is None else f"{line.ratio:.2f}x"
            out.append(
                f"| {line.case} | {line.label}{marks} | {LABELS.get(line.tidings, line.tidings)}"
                f" | {line.tidings_cell} | {LABELS.get(line.peer, line.peer)} | "
                f"{line.peer_cell} | {ratio} | {line.favours} |"
            )
        out += [""] + [f"[{i}] {note}  " for i, note in enumerate(notes, 1)]
        if any(line.unsteady for line in lines(results) if line.scenario == scenario):
            out.append(f"{UNSTEADY} some run of this figure strayed more than "
                       f"±{SPREAD_FLAG:.0%} from the median of its runs.  ")
        out += [""]
    if results.problems:
        out += ["## Problems seen during the run", ""]
        out += [f"- {problem}" for problem in results.problems] + [""]
    return "\n".join(out).rstrip() + "\n"


# -- Chart ----------------------------------------------------------------------------------

COLORS = {"tidings-memory": "#1f77b4", "tidings-kafka": "#2ca02c", "socketio": "#ff7f0e",
          "socketio-asyncio": "#9467bd", "socketio-kafka": "#d62728"}


def _cdf(hist: list[list[float]]) -> tuple[list[float], list[float]]:
    total = sum(count for _, count in hist)
    xs: list[float] = []
    ys: list[float] = []
    seen = 0.0
    for upper, count in sorted(hist):
        seen += count
        xs.append(upper)
        ys.append(100 * seen / total)
    return xs, ys


def chart(results: Results, path: Path) -> bool:
    """Latency CDFs (fan-out at 1,000 connections; many channels) and throughput by N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(17, 5.2))
    drew = False
    fanout_n = _fanout_connections(results)
    plan = results.meta.get("plan", {})
    clients = min(plan.get("channels_latency_clients", 0), plan.get("channels_connections", 0))
    panels: list[tuple[Any, str, str]] = [
        (axes[0], "fixed", f"Fan-out latency: {fanout_n:,} clients on one channel,\n"
         f"{plan.get('fixed_deliveries_per_s', 0):,} deliveries/s offered"),
        (axes[1], "latency", "Many channels latency: "
         f"{plan.get('channels_latency_rate', 0):,} msg/s to {clients:,} clients\n"
         f"(each on its own channel, {plan.get('channels_connections', 0):,} connected)"),
    ]
    for ax, kind, title in panels:
        for key, hist in sorted(results.distributions.items()):
            _, case, system = key.split("/")
            if not hist or not case.endswith(kind):
                continue
            if kind == "fixed" and not case.startswith(f"{fanout_n:,} "):
                continue
            xs, ys = _cdf(hist)
            ax.plot(xs, ys, label=LABELS.get(system, system), color=COLORS.get(system),
                    linewidth=2)
            drew = True
        ax.set_xscale("log")
        ax.set_xlabel("publish-to-client latency (ms, log scale)")
        ax.set_ylabel("deliveries at or below (%)")
        ax.set_ylim(0, 100.5)
        ax.axhline(99, color="grey", linestyle=":", linewidth=1)
        ax.text(ax.get_xlim()[0], 99.3, " p99", color="grey", fontsize=8, va="bottom")
        ax.grid(True, which="both", alpha=0.3)
        ax.set_title(title, fontsize=11)
        if ax.get_lines()[1:]:  # the p99 guide line is always there
            ax.legend(fontsize=8, loc="lower right")
        else:
            ax.text(0.5, 0.5, "not measured in this run", transform=ax.transAxes, ha="center")
    ax = axes[2]
    runs: dict[str, dict[int, list[float]]] = {}
    for item in results.figures:
        if item["metric"] == "sat_rate" and "fanout" in item["scenario"]:
            n = int(item["case"].split()[0].replace(",", ""))
            runs.setdefault(item["system"], {}).setdefault(n, []).append(float(item["value"]))
    series = {system: sorted((n, statistics.median(values)) for n, values in by_n.items())
              for system, by_n in runs.items()}
    for system, points in sorted(series.items()):
        ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", linewidth=2,
                label=LABELS.get(system, system), color=COLORS.get(system))
        drew = True
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("connections on one channel (log scale)")
    ax.set_ylabel("deliveries/s at saturation, one core (median of runs, log scale)")
    ax.set_title("Fan-out throughput by connection count", fontsize=11)
    ax.grid(True, which="both", alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    machine = results.meta.get("machine", {})
    fig.suptitle(
        f"tidings vs peers, {results.meta.get('mode')} run: {machine.get('cpu')}, "
        f"server pinned to 1 of {machine.get('cores')} cores", fontsize=12,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return drew


def _fanout_connections(results: Results) -> int:
    counts = sorted({int(key.split("/")[1].split()[0].replace(",", ""))
                     for key in results.distributions if "fanout" in key})
    return 1000 if 1000 in counts else (counts[-1] if counts else 0)


def write(results: Results, json_path: Path, markdown_path: Path, chart_path: Path) -> None:
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(results.to_json(), indent=1) + "\n")
    markdown_path.parent.mkdir(parents=True, exist_ok=True)
    drew = chart(results, chart_path)
    relative = chart_path.name if chart_path.parent == markdown_path.parent else str(chart_path)
    markdown_path.write_text(markdown(results, relative if drew else None))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Re-render a benchmark results file.")
    parser.add_argument("results", nargs="?", type=Path, default=ROOT / "bench" / "results.json")
    parser.add_argument("--markdown", type=Path, default=ROOT / "docs" / "benchmarks.md")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "benchmarks.png")
    args = parser.parse_args(argv)
    results = load(args.results)
    print(terminal_table(results))
    drew = chart(results, args.chart)
    args.markdown.write_text(markdown(results, args.chart.name if drew else None))


if __name__ == "__main__":
    main()
