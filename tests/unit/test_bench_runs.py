"""The benchmark harness's repeated runs: every run kept, medians and spreads reported, unsteady
figures flagged, systems interleaved in a rotating order, a failed run retried once."""

from __future__ import annotations

import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.clients import DeliveryCheckFailed  # noqa: E402
from bench.core import SPREAD_FLAG, Results, median, spread, unsteady  # noqa: E402
from bench.report import UNSTEADY, cell, lines, targets  # noqa: E402
from bench.scenarios.common import interleave, rotation  # noqa: E402

runs = st.lists(st.floats(min_value=0.001, max_value=1e9, allow_nan=False), min_size=1,
                max_size=9)
CASE = "1,000 connections"


@given(runs)
def test_the_median_lies_within_the_spread_of_the_runs(values: list[float]) -> None:
    middle = median(values)
    assert middle is not None
    assert min(values) <= middle <= max(values)
    bounds = spread(values)
    assert bounds == ((min(values), max(values)) if len(values) > 1 else None)


@given(st.floats(min_value=0.001, max_value=1e9), st.integers(min_value=1, max_value=9))
def test_identical_runs_are_steady(value: float, n: int) -> None:
    assert not unsteady([value] * n)


@given(runs)
def test_a_figure_is_unsteady_exactly_when_a_run_strays_past_the_limit(values: list[float]) -> None:
    middle = median(values)
    assert middle is not None
    strays = any(abs(value - middle) > SPREAD_FLAG * middle for value in values)
    assert unsteady(values) == (strays and len(values) > 1)


def test_no_runs_no_median() -> None:
    assert median([]) is None
    assert spread([]) is None
    assert not unsteady([])


@given(st.lists(st.text(min_size=1, max_size=5), min_size=1, max_size=6, unique=True))
def test_each_system_goes_first_once_in_as_many_runs_as_there_are_systems(
    systems: list[str],
) -> None:
    orders = [rotation(systems, run) for run in range(len(systems))]
    assert all(sorted(order) == sorted(systems) for order in orders)
    assert sorted(order[0] for order in orders) == sorted(systems)


def test_value_is_the_median_of_every_run_and_every_run_is_kept() -> None:
    results = Results()
    for value in (100.0, 300.0, 120.0):
        results.figure("6-fanout-memory", CASE, "tidings-memory", "sat_rate", value, "/s")
    assert results.values("6-fanout-memory", CASE, "tidings-memory", "sat_rate") == [
        100.0, 300.0, 120.0]
    assert results.value("6-fanout-memory", CASE, "tidings-memory", "sat_rate") == 120.0
    assert results.value("6-fanout-memory", CASE, "socketio", "sat_rate") is None


def test_a_cell_shows_the_median_the_spread_and_flags_an_unsteady_figure() -> None:
    assert cell([14.0, 90.9, 226.0], "ms") == "90.9 (14\u2013226) " + UNSTEADY
    assert cell([100.0, 105.0, 98.0], "/s") == "100 (98\u2013105)"
    assert cell([100.0], "/s") == "100"


def test_the_report_takes_ratios_of_medians() -> None:
    results = Results()
    for mine, theirs in ((200.0, 100.0), (400.0, 110.0), (300.0, 90.0)):
        results.figure("6-fanout-memory", CASE, "tidings-memory", "sat_rate", mine, "/s")
        results.figure("6-fanout-memory", CASE, "socketio", "sat_rate", theirs, "/s")
    results.row("6-fanout-memory", CASE, "deliveries/s", ("sat_rate",), unit="/s")
    results.pair("6-fanout-memory", "tidings-memory", "socketio")
    [line] = lines(results)
    assert line.ratio == pytest.approx(3.0)
    assert line.runs == 3
    assert line.unsteady  # 200 and 400 stray over 20 % from 300
    assert line.tidings_cell == f"300 (200\u2013400) {UNSTEADY}"
    fanout = next(t for t in targets(results) if t[0].startswith("fan-out >= 3x"))
    assert fanout[2] is True
    assert "3 runs" in fanout[1]


def test_a_target_reads_its_own_case_not_one_that_starts_alike() -> None:
    """The 1,000-connection fan-out target is the lists-of-100 case, recorded after the case of
    one message per request whose name starts the same."""
    results = Results()
    single = "1,000 connections, 1 message per request"
    results.figure("6-fanout-memory", single, "tidings-memory", "sat_rate", 150_000.0, "/s")
    for system, rate in (("tidings-memory", 1_200_000.0), ("socketio", 140_000.0)):
        results.figure("6-fanout-memory", "1,000 connections", system, "sat_rate", rate, "/s")
    fanout = next(t for t in targets(results) if t[0].startswith("fan-out >= 3x"))
    assert fanout[2] is True
    assert "1,200,000" in fanout[1]


def _context() -> Any:
    logged: list[str] = []
    return SimpleNamespace(
        results=Results(), log=logged.append, logged=logged,
        procs=SimpleNamespace(stop_all=lambda: None),
    )


def test_interleave_runs_every_system_each_run_in_a_rotating_order() -> None:
    ctx = _context()
    calls: list[tuple[str, int]] = []

    def measure(system: str, run: int) -> None:
        calls.append((system, run))
        ctx.results.figure("s", "c", system, "rate", float(run), "/s")

    interleave(ctx, "s", ("a", "b", "c"), 3, measure)
    assert calls == [("a", 0), ("b", 0), ("c", 0), ("b", 1), ("c", 1), ("a", 1),
                     ("c", 2), ("a", 2), ("b", 2)]
    assert [item["run"] for item in ctx.results.figures if item["system"] == "a"] == [1, 2, 3]
    assert ctx.results.current_run is None


def test_interleave_retries_a_failed_run_once_then_gives_up() -> None:
    ctx = _context()
    failures = {"b": 1}

    def measure(system: str, run: int) -> None:
        if failures.get(system, 0) > 0:
            failures[system] -= 1
            raise RuntimeError("Kafka hiccup")
        ctx.results.figure("s", "c", system, "rate", 1.0, "/s")

    interleave(ctx, "s", ("a", "b"), 2, measure)
    assert len(ctx.results.values("s", "c", "b", "rate")) == 2
    assert any("first attempt failed" in problem for problem in ctx.results.problems)

    def broken(system: str, run: int) -> None:
        raise RuntimeError("broken for good")

    with pytest.raises(RuntimeError, match="broken for good"):
        interleave(_context(), "s", ("a",), 1, broken)


def test_a_peer_that_loses_messages_is_reported_and_the_others_still_measured() -> None:
    ctx = _context()
    calls: list[tuple[str, int]] = []

    def measure(system: str, run: int) -> None:
        calls.append((system, run))
        if system == "socketio-asyncio":
            raise DeliveryCheckFailed("client 0: seq 0 missing, got 9 next")
        ctx.results.figure("s", "c", system, "rate", 1.0, "/s")

    interleave(ctx, "s", ("tidings-memory", "socketio-asyncio", "centrifugo"), 3, measure)
    assert calls.count(("socketio-asyncio", 0)) == 2  # retried once, then never again
    assert not [call for call in calls if call[0] == "socketio-asyncio" and call[1] > 0]
    assert len(ctx.results.values("s", "c", "centrifugo", "rate")) == 3
    assert len(ctx.results.values("s", "c", "tidings-memory", "rate")) == 3
    assert ctx.results.values("s", "c", "socketio-asyncio", "rate") == []
    [lost] = [problem for problem in ctx.results.problems if "lost messages" in problem]
    assert "socketio-asyncio" in lost and "seq 0 missing" in lost


def test_tidings_losing_a_message_ends_the_scenario() -> None:
    def measure(system: str, run: int) -> None:
        if system == "tidings-memory":
            raise DeliveryCheckFailed("client 3: seq 1 repeated")

    with pytest.raises(DeliveryCheckFailed, match="seq 1 repeated"):
        interleave(_context(), "s", ("socketio", "tidings-memory"), 2, measure)


def test_scaling_interleaves_both_worker_counts_plan_repeats_times_on_distinct_servers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bench.plan import PLANS
    from bench.scenarios import channels, fanout, scaling
    from bench.scenarios.common import server_tag

    ctx = _context()
    ctx.plan = PLANS["quick"]
    calls: list[tuple[str, str, int]] = []
    monkeypatch.setattr(fanout, "_one", lambda ctx, scenario, system, n, run=0: calls.append(
        (scenario, system, run)))
    monkeypatch.setattr(channels, "_one", lambda ctx, system, n, scenario="", run=0: calls.append(
        (scenario, system, run)))
    scaling.run(ctx)
    runs = ctx.plan.repeats
    assert runs > 1
    for scenario in (scaling.FANOUT, scaling.CHANNELS):
        mine = [(system, run) for name, system, run in calls if name == scenario]
        assert mine == [(system, run) for run in range(runs)
                        for system in rotation(scaling.SYSTEMS, run)]
    tags = {server_tag(scenario, system, "c100", run) for scenario, system, run in calls}
    assert len(tags) == len(calls)  # every measurement its own server, logs and topics
    assert server_tag(scaling.CHANNELS, "tidings-1w-kafka", "c100", 0) != server_tag(
        "2-many-channels", "tidings-kafka", "c100", 0)


def test_the_pusher_scenario_interleaves_both_protocols_plan_repeats_times(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from bench.plan import PLANS
    from bench.scenarios import fanout, pusher

    ctx = _context()
    ctx.plan = PLANS["quick"]
    ctx.procs.stop = lambda child: None
    started: list[str] = []
    measured: list[tuple[str, int]] = []

    def start_server(ctx: Any, system: str, tag: str, *, pusher: bool = False) -> Any:
        assert pusher
        started.append(tag)
        return SimpleNamespace(child=None, speaking=lambda name: SimpleNamespace(system=name))

    monkeypatch.setattr(pusher, "start_server", start_server)
    def measure(ctx: Any, scenario: str, server: Any, n: int) -> None:
        measured.append((server.system, n))
        ctx.results.figure(scenario, f"{n:,} connections", server.system, "sat_rate", 1.0, "/s")

    monkeypatch.setattr(fanout, "measure", measure)
    pusher.run(ctx)
    runs = ctx.plan.repeats
    assert measured == [(system, n) for n in ctx.plan.fanout_connections for run in range(runs)
                        for system in rotation(pusher.SYSTEMS, run)]
    assert len(set(started)) == len(started) == len(measured)
    n = ctx.plan.fanout_connections[0]
    assert [item["run"] for item in ctx.results.figures
            if item["system"] == "pusher-ws" and item["case"] == f"{n:,} connections"] == list(
                range(1, runs + 1))
