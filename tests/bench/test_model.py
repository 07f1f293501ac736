"""bench/model.py: the laws of the scale-out model (ADR 0012), and its command line."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from bench.model import Costs, Workload, node_load, nodes_needed, read_ceiling
from hypothesis import given
from hypothesis import strategies as st

from bench import model

micro = st.floats(min_value=0.0, max_value=1e-3, allow_nan=False, allow_infinity=False)
costs_st = st.builds(Costs, read=micro, first=micro, extra=micro,
                     idle=st.floats(min_value=0.0, max_value=1e-4),
                     base=st.floats(min_value=0.0, max_value=0.1),
                     stream=st.floats(min_value=0.0, max_value=0.2))
nodes_st = st.integers(min_value=1, max_value=500)


@st.composite
def workloads(draw: st.DrawFn) -> Workload:
    connections = draw(st.integers(min_value=1, max_value=2_000_000))
    return Workload(
        connections=connections,
        rate=draw(st.floats(min_value=0.0, max_value=1e6)),
        recipients=draw(st.floats(min_value=0.0, max_value=float(min(connections, 1_000)))),
        fanout_share=draw(st.floats(min_value=0.0, max_value=1.0)),
    )


def close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)


@given(costs_st, workloads(), nodes_st)
def test_a_node_never_spends_less_than_reading_the_whole_stream(
    costs: Costs, work: Workload, nodes: int
) -> None:
    load = node_load(costs, work, nodes)
    assert close(load.read_cpu, work.rate * costs.read + (costs.stream if work.rate else 0.0))
    assert load.cpu >= load.read_cpu + load.base_cpu


@given(costs_st, workloads(), nodes_st)
def test_doubling_the_nodes_halves_each_nodes_deliveries_and_connections_not_its_reads(
    costs: Costs, work: Workload, nodes: int
) -> None:
    one, two = node_load(costs, work, nodes), node_load(costs, work, 2 * nodes)
    assert close(two.deliveries, one.deliveries / 2)
    assert close(two.connections, one.connections / 2)
    assert close(two.idle_cpu, one.idle_cpu / 2)
    assert close(two.read_cpu, one.read_cpu)
    # A message's frame is built on every node that holds one of its recipients: the delivery
    # part never rises, and falls by at most half as long as a message's first local
    # delivery costs at least as much as a further one (as measured; exactly half with one
    # recipient a message, below).
    assert two.deliver_cpu <= one.deliver_cpu * (1 + 1e-9) + 1e-12
    if costs.first >= costs.extra:
        assert two.deliver_cpu >= one.deliver_cpu / 2 * (1 - 1e-9) - 1e-12


@given(costs_st, st.integers(min_value=1, max_value=10**6),
       st.floats(min_value=0.0, max_value=1e6), nodes_st)
def test_with_one_recipient_a_message_doubling_the_nodes_halves_the_delivery_part(
    costs: Costs, connections: int, rate: float, nodes: int
) -> None:
    work = Workload(connections, rate, recipients=1)
    one, two = node_load(costs, work, nodes), node_load(costs, work, 2 * nodes)
    assert close(two.deliver_cpu, one.deliver_cpu / 2)


@given(costs_st, workloads(), nodes_st, st.floats(min_value=1.0, max_value=10.0),
       st.integers(min_value=0, max_value=1_000_000))
def test_cpu_per_node_is_monotone_in_the_rate_and_the_connections(
    costs: Costs, work: Workload, nodes: int, factor: float, more: int
) -> None:
    base = node_load(costs, work, nodes).cpu
    faster = Workload(work.connections, work.rate * factor, work.recipients, work.fanout_share)
    bigger = Workload(work.connections + more, work.rate, work.recipients, work.fanout_share)
    assert node_load(costs, faster, nodes).cpu >= base * (1 - 1e-9)
    assert node_load(costs, bigger, nodes).cpu >= base * (1 - 1e-9)


@given(costs_st, workloads(), nodes_st)
def test_cpu_per_node_never_rises_with_more_nodes(
    costs: Costs, work: Workload, nodes: int
) -> None:
    assert node_load(costs, work, nodes + 1).cpu <= node_load(costs, work, nodes).cpu * (
        1 + 1e-9) + 1e-12


@given(costs_st, workloads(), st.floats(min_value=0.1, max_value=4.0))
def test_nodes_needed_is_the_fewest_that_fit_and_none_past_the_read_ceiling(
    costs: Costs, work: Workload, budget: float
) -> None:
    needed = nodes_needed(costs, work, budget, limit=4096)
    if 0 < read_ceiling(costs, budget) <= work.rate:
        assert needed is None
    if needed is not None:
        assert node_load(costs, work, needed).cpu <= budget
        if needed > 1:
            assert node_load(costs, work, needed - 1).cpu > budget


def test_a_stream_past_the_read_ceiling_fits_no_cluster() -> None:
    costs = Costs(read=20e-6, first=25e-6, extra=1e-6, idle=0.0, base=0.05, stream=0.15)
    assert read_ceiling(costs) == pytest.approx(40_000)
    assert nodes_needed(costs, Workload(10, 40_000)) is None
    assert nodes_needed(costs, Workload(1_000_000, 30_000)) is not None


def test_bad_figures_are_refused_with_their_name() -> None:
    with pytest.raises(ValueError, match="read cost"):
        Costs(read=-1.0, first=0.0, extra=0.0, idle=0.0)
    with pytest.raises(ValueError, match="fan-out share"):
        Workload(10, 1.0, fanout_share=1.5)
    with pytest.raises(ValueError, match="only 10 connections"):
        Workload(10, 1.0, recipients=11)
    with pytest.raises(ValueError, match="at least one node"):
        node_load(model.DEFAULTS, Workload(10, 1.0), 0)


def test_costs_come_from_the_bench_results_when_they_hold_them(tmp_path: Path) -> None:
    results = {"figures": [
        {"scenario": model.CLUSTER, "case": "costs", "system": "tidings-kafka",
         "metric": "read_us", "value": 20.0},
        {"scenario": model.CHANNELS, "case": "10,000 connections", "system": "tidings-kafka",
         "metric": "sat_per_cpu_s", "value": 20_000.0},
        {"scenario": model.FANOUT, "case": "1,000 connections", "system": "tidings-kafka",
         "metric": "sat_per_cpu_s", "value": 1_000_000.0},
    ]}
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    costs = model.load_costs(path, {"idle": 3.0, "stream": 0.1})
    assert costs.read == pytest.approx(20e-6)
    assert costs.first == pytest.approx(50e-6 - 20e-6)
    assert costs.extra == pytest.approx(1e-6)
    assert costs.idle == pytest.approx(3e-6)
    assert costs.stream == pytest.approx(0.1)
    assert costs.sources["idle"] == "flag"
    assert "results.json" in costs.sources["read"]


def test_the_command_prints_the_cpu_per_node_and_the_table(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "none.json"
    assert model.main(["--nodes", "3", "--connections", "3000", "--rate", "1000",
                       "--results", str(missing), "--read-us", "20", "--first-us", "30",
                       "--extra-us", "1", "--idle-us", "0", "--base-cores", "0.01",
                       "--stream-cores", "0.005"]) == 0
    out = capsys.readouterr().out
    # 1,000 msg/s x 20 us read + 0.005 stream, 333 local messages x 30 us, no further recipient.
    assert ("CPU per node: 0.045 cores = read and stream 0.025 + deliver 0.010 + idle 0.000 "
            "+ base 0.010") in out
    assert "read ceiling: 49,250 messages/s" in out
    assert model.main(["--table", "--results", str(missing), "--grid-nodes", "1,2",
                       "--grid-connections", "10", "--grid-rates", "100000"]) == 0
    assert "N=2" in capsys.readouterr().out


def test_the_command_names_a_bad_argument(capsys: pytest.CaptureFixture[str]) -> None:
    assert model.main(["--connections", "5", "--recipients-per-message", "6"]) == 2
    assert "only 5 connections" in capsys.readouterr().err
