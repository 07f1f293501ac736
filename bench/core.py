"""The run's shared state: the plan, the processes, and the figures recorded so far."""

from __future__ import annotations

import json
import os
import secrets
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .environment import ROOT
from .plan import Plan
from .procs import Processes

SUT_CORE = 0
"""The system under test (gateway, server, publish or consume worker) runs on this core."""
LOAD_CORE = 1
"""The load generator and the publishers run on this one; Kafka floats over both."""

LABELS = {
    "tidings-memory": "tidings (memory broker)",
    "tidings-kafka": "tidings (Kafka)",
    "socketio": "python-socketio (gevent)",
    "socketio-asyncio": "python-socketio (asyncio)",
    "socketio-kafka": "python-socketio + KafkaManager",
    "tidings": "tidings",
    "tidings-nowait": "tidings broadcast_nowait()",
    "tidings-sync": "tidings broadcast()",
    "kafka-python": "kafka-python",
    "kafka-python-plain": "kafka-python as an app (500 a poll, json.loads)",
    "kafka-python-feed": "kafka-python as tidings' feed (2,000 a poll, up to the channel)",
    "kafka-python-sync": "kafka-python send().get()",
    "broadcaster": "broadcaster (aiokafka)",
    "tidings-ws": "tidings' protocol (/ws)",
    "pusher-ws": "Pusher's protocol (/app/{key})",
    "centrifugo": "Centrifugo (memory engine)",
    "model": "bench/model.py's prediction",
}

Better = Literal["higher", "lower"]

SPREAD_FLAG = 0.20
"""A figure whose runs stray more than this share from their median (either way) is flagged."""

# Environment variables of tidings and Kafka clients that must not leak from the caller's shell.
_OWN_PREFIXES = ("REALTIME_", "KAFKA_")


@dataclass
class Row:
    """One line of a scenario's table: the metrics it shows and the one its ratio is taken on."""

    scenario: str
    case: str
    label: str
    metrics: tuple[str, ...]
    ratio_metric: str
    better: Better
    unit: str


def median(values: list[float]) -> float | None:
    """The median of the runs, None when there is none."""
    return float(statistics.median(values)) if values else None


def spread(values: list[float]) -> tuple[float, float] | None:
    """(min, max) of the runs, None with fewer than two."""
    return (min(values), max(values)) if len(values) > 1 else None


def unsteady(values: list[float], limit: float = SPREAD_FLAG) -> bool:
    """Whether some run strays more than ``limit`` (a share) from the runs' median."""
    middle = median(values)
    if middle is None or len(values) < 2:
        return False
    if middle == 0:
        return any(value != 0 for value in values)
    return any(abs(value - middle) > limit * abs(middle) for value in values)


@dataclass
class Results:
    meta: dict[str, Any] = field(default_factory=dict)
    figures: list[dict[str, Any]] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)
    pairs: dict[str, list[tuple[str, str]]] = field(default_factory=dict)
    runs: list[dict[str, Any]] = field(default_factory=list)
    distributions: dict[str, list[list[float]]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    scenarios: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Each scenario's ``title`` and ``about``, and for a scenario that is not a contest
    between tidings and a peer (the cluster against its model) its ``ratio``, e.g.
    ``"measured / model"``: the report names its columns and ratio so and favours neither."""
    notes: dict[str, list[str]] = field(default_factory=dict)
    """Footnotes on one system's figures of one case, keyed ``scenario|case|system``."""
    current_run: int | None = None
    """The run (1, 2, ...) of ``interleave`` in progress: stamped on the figures it records."""

    def figure(
        self, scenario: str, case: str, system: str, metric: str, value: float, unit: str = ""
    ) -> None:
        item = {"scenario": scenario, "case": case, "system": system, "metric": metric,
                "value": value, "unit": unit}
        if self.current_run is not None:
            item["run"] = self.current_run
        self.figures.append(item)

    def values(self, scenario: str, case: str, system: str, metric: str) -> list[float]:
        """Every run's value of a figure, in the order the runs were made."""
        return [float(item["value"]) for item in self.figures
                if (item["scenario"], item["case"], item["system"], item["metric"]) == (
                    scenario, case, system, metric)]

    def value(self, scenario: str, case: str, system: str, metric: str) -> float | None:
        """The median of a figure's runs (None: not measured)."""
        return median(self.values(scenario, case, system, metric))

    def row(
        self, scenario: str, case: str, label: str, metrics: tuple[str, ...], *,
        ratio: str | None = None, better: Better = "higher", unit: str = "",
    ) -> None:
        if not any(r.scenario == scenario and r.case == case and r.label == label
                   for r in self.rows):
            self.rows.append(Row(scenario, case, label, metrics, ratio or metrics[0], better, unit))

    def pair(self, scenario: str, tidings: str, peer: str) -> None:
        pairs = self.pairs.setdefault(scenario, [])
        if (tidings, peer) not in pairs:
            pairs.append((tidings, peer))

    def note(self, scenario: str, case: str, system: str, text: str) -> None:
        notes = self.notes.setdefault(f"{scenario}|{case}|{system}", [])
        if text not in notes:
            notes.append(text)

    def notes_for(self, scenario: str, case: str, system: str) -> list[str]:
        return self.notes.get(f"{scenario}|{case}|{system}", [])

    def problem(self, text: str) -> None:
        print(f"bench: problem: {text}", file=sys.stderr, flush=True)
        self.problems.append(text)

    def to_json(self) -> dict[str, Any]:
        return {
            "meta": self.meta,
            "scenarios": self.scenarios,
            "figures": self.figures,
            "rows": [row.__dict__ for row in self.rows],
            "pairs": {name: [list(pair) for pair in pairs] for name, pairs in self.pairs.items()},
            "notes": self.notes,
            "problems": self.problems,
            "runs": self.runs,
            "distributions": self.distributions,
        }


@dataclass
class Context:
    plan: Plan
    procs: Processes
    loadgen: Path
    brokers: str
    work: Path
    results: Results
    pin: bool
    profile: bool = False
    run_id: str = field(default_factory=lambda: time.strftime("%m%d%H%M%S"))
    secret: str = field(default_factory=lambda: secrets.token_hex(32))
    api_key: str = field(default_factory=lambda: secrets.token_hex(16))
    python: str = sys.executable
    topics: list[str] = field(default_factory=list)
    """Topic prefixes this run created, deleted at the end."""
    snapshot: Path | None = None
    """A copy of src/ as the package ``tidings``, imported by every process of the run."""

    @property
    def kafka_url(self) -> str:
        return f"kafka://{self.brokers.split(',')[0]}"

    def prefix(self, tag: str) -> str:
        """A topic prefix of this run (letters and digits only), remembered for clean-up."""
        prefix = f"bench{self.run_id}{tag}"
        self.topics.append(prefix)
        return prefix

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a child: the caller's, minus its tidings/Kafka settings, plus ours."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(_OWN_PREFIXES)}
        paths = [str(self.snapshot) if self.snapshot else "", str(ROOT), env.get("PYTHONPATH")]
        env["PYTHONPATH"] = os.pathsep.join(filter(None, paths))
        env["PYTHONUNBUFFERED"] = "1"
        env.update(extra)
        return env

    def log(self, text: str) -> None:
        print(f"bench: {text}", file=sys.stderr, flush=True)

    def worker(
        self, name: str, module: str, args: list[str], *, core: int | None,
        env: dict[str, str] | None = None, timeout: float = 600,
    ) -> dict[str, Any]:
        """Run ``python -m bench.workers.MODULE ARGS`` to completion; its last JSON line."""
        child = self.procs.start(
            name, [self.python, "-m", f"bench.workers.{module}", *args], core=core,
            env=env or self.env(), cwd=self.work, pipe=True,
        )
        try:
            child.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.procs.stop(child)
            raise RuntimeError(f"{name} took over {timeout:g} s:\n{child.tail()}") from None
        last: dict[str, Any] | None = None
        while True:
            line = child.readline(5)
            if line is None:
                break
            if line.startswith("{"):
                last = json.loads(line)
        self.procs.stop(child)
        if child.popen.returncode != 0 or last is None:
            raise RuntimeError(
                f"{name} failed (exit {child.popen.returncode}):\n{child.tail()}"
            )
        return last
