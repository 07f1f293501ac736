"""The benchmark report's layout: scenarios in the order of their numbers, and the cluster
scenario (measured against a model, no contest) shown with its own ratio and no winner."""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.core import Results  # noqa: E402
from bench.report import fmt, lines, load, markdown, scenario_order, terminal_table  # noqa: E402

CLUSTER = "10-cluster"
FANOUT = "1-fanout-kafka"


@given(st.lists(st.integers(min_value=0, max_value=10_000), unique=True, max_size=12),
       st.randoms())
def test_scenarios_sort_by_their_leading_number(numbers: list[int], rng: random.Random) -> None:
    names = [f"{n}-scenario" for n in numbers]
    shuffled = list(names)
    rng.shuffle(shuffled)
    assert sorted(shuffled, key=scenario_order) == [f"{n}-scenario" for n in sorted(numbers)]


def test_a_name_without_a_number_sorts_last() -> None:
    assert sorted(["other", "10-cluster", "9-pusher-protocol"], key=scenario_order) == [
        "9-pusher-protocol", "10-cluster", "other"]


def _results() -> Results:
    """A fan-out contest, a many-channels one, and the cluster against its model, recorded
    cluster first (as ``--only cluster,...`` could)."""
    results = Results()
    results.scenarios[CLUSTER] = {"title": "Cluster", "about": "vs the model.",
                                  "ratio": "measured / model"}
    results.pair(CLUSTER, "tidings-kafka", "model")
    results.figure(CLUSTER, "node 0", "tidings-kafka", "cpu_s", 3.0, "CPU-s")
    results.figure(CLUSTER, "node 0", "model", "cpu_s", 2.0, "CPU-s")
    results.row(CLUSTER, "node 0", "CPU-seconds of the node over the check", ("cpu_s",),
                better="lower", unit="CPU-s")
    for scenario, peer in ((FANOUT, "socketio-kafka"), ("2-many-channels", "socketio-kafka")):
        results.scenarios[scenario] = {"title": scenario, "about": "a contest."}
        results.pair(scenario, "tidings-kafka", peer)
        results.figure(scenario, "100 connections", "tidings-kafka", "sat_rate", 300.0, "/s")
        results.figure(scenario, "100 connections", peer, "sat_rate", 100.0, "/s")
        results.row(scenario, "100 connections", "deliveries/s at saturation", ("sat_rate",),
                    unit="/s")
    return results


def test_the_table_lists_scenarios_by_number() -> None:
    results = _results()
    assert [line.scenario for line in lines(results)] == [FANOUT, "2-many-channels", CLUSTER]
    text = markdown(results, None)
    assert text.index("## 1. ") < text.index("## 2. ") < text.index("## 10. ")


def test_the_cluster_shows_measured_over_model_and_favours_neither() -> None:
    results = _results()
    cluster = next(line for line in lines(results) if line.scenario == CLUSTER)
    assert cluster.ratio == 1.5  # measured / model, though "lower is better" would say peer
    assert cluster.favours == "-"
    assert cluster.ratio_name == "measured / model"
    fanout = next(line for line in lines(results) if line.scenario == FANOUT)
    assert (fanout.ratio, fanout.favours, fanout.ratio_name) == (3.0, "tidings", None)

    table = terminal_table(results)
    [row] = [row for row in table.splitlines() if row.startswith(CLUSTER)]
    assert "1.50x" in row
    assert row.rstrip().endswith("- (ratio measured / model)")
    assert "peer" not in row

    text = markdown(results, None)
    cluster_section = text[text.index("## 10. "):]
    assert ("| case | metric | measured | | model | | measured / model (medians) | favours |"
            in cluster_section)
    assert cluster_section.count("| 1.50x | - |") == 1
    fanout_section = text[text.index("## 1. "):text.index("## 2. ")]
    assert ("| case | metric | tidings | | peer | | tidings / peer (medians) | favours |"
            in fanout_section)
    assert "| 3.00x | tidings |" in fanout_section


def test_the_cluster_layout_survives_results_json(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text(json.dumps(_results().to_json()))
    cluster = next(line for line in lines(load(path)) if line.scenario == CLUSTER)
    assert (cluster.ratio_name, cluster.favours) == ("measured / model", "-")


def test_a_count_without_a_unit_is_written_out() -> None:
    assert fmt(30_000.0, "") == "30,000"
    assert fmt(0.961, "") == "0.961"
    assert fmt(1_234_567.0, "/s") == "1,234,567"
