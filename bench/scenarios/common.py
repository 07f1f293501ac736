"""What the socket scenarios share: tokens, the warm-up, and one measured publishing phase."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import Any

from ..clients import DeliveryCheckFailed, LoadGen
from ..core import LOAD_CORE, Context
from ..procs import Child
from ..profiles import render, summarize
from ..systems import WORKERS, Server

DRAIN_SECONDS = 60.0
"""How long a phase waits for deliveries after its publisher stopped."""
PUBLISHER_GRACE_SECONDS = 30.0
"""How long a publisher may go on after the measurement before it is stopped."""
LIVE_IDLE_SECONDS = 15.0
"""Silence that ends a measurement early (deliveries stopped: something is lost or stuck)."""
BACKLOG_IDLE_SECONDS = 20.0
"""Silence that ends a backlog measurement (a resumed Kafka client may rejoin its group)."""


def rotation(systems: Sequence[str], run: int) -> list[str]:
    """The order of ``systems`` in run ``run`` (0, 1, ...): rotated one place each run, so no
    system always goes first (against a freshly started Kafka, a cold page cache...)."""
    shift = run % len(systems) if systems else 0
    return [*systems[shift:], *systems[:shift]]


def interleave(
    ctx: Context, label: str, systems: Sequence[str], runs: int,
    measure: Callable[[str, int], None],
) -> None:
    """Measure every system ``runs`` times, interleaved: A, B, C, then B, C, A, then C, A, B...

    ``measure(system, run)`` records its figures with ``ctx.results.figure`` as usual; each
    call records one run of each figure (stamped with the run, 1-based), and the report shows
    the median and the spread of the runs. A failed measurement is retried once (``twice``).

    A peer whose clients lose, double or reorder messages twice over (``DeliveryCheckFailed``)
    is a result, not a broken run: it is reported as a problem naming what went wrong, left out
    of the later runs of ``label``, and the other systems are still measured. The same failure
    of tidings ends the scenario.
    """
    failed: set[str] = set()
    try:
        for run in range(runs):
            for system in rotation(systems, run):
                if system in failed:
                    continue
                ctx.results.current_run = run + 1
                ctx.log(f"{label}: {system}, run {run + 1} of {runs}")
                try:
                    twice(ctx, f"{label}/{system}/run {run + 1}", partial(measure, system, run))
                except DeliveryCheckFailed as exc:
                    if is_tidings(system):
                        raise
                    failed.add(system)
                    ctx.procs.stop_all()
                    ctx.results.problem(
                        f"{label}: {system} lost messages (twice in run {run + 1}; not measured "
                        f"again, no figures): {exc}".splitlines()[0]
                    )
    finally:
        ctx.results.current_run = None


def is_tidings(system: str) -> bool:
    """Whether a system is tidings (any broker, worker count or protocol), not a peer."""
    return system.startswith(("tidings", "pusher-"))


def server_tag(scenario: str, system: str, case: str, run: int) -> str:
    """The tag of a measurement's server (its logs, node id and Kafka topic prefix): the
    scenario's number, the case, the run, and the worker count of a ``tidings-Nw-...`` system,
    so that no two measurements of a bench run share topics (scenarios 2 and 8, 7's two systems).
    """
    workers = f"w{WORKERS[system]}" if system in WORKERS else ""
    return f"{scenario.split('-', 1)[0]}{case}r{run}{workers}"


def twice(ctx: Context, label: str, run: Callable[[], None]) -> None:
    """Run a system's measurement; if it fails (a shared Kafka hiccups), once more from scratch."""
    try:
        run()
    except Exception as exc:
        ctx.results.problem(f"{label}: first attempt failed, retrying: {exc}".splitlines()[0])
        ctx.procs.stop_all()
        run()


def tokens_file(ctx: Context, n: int) -> Path:
    """``n`` connection tokens (users 0..n-1) signed with the gateways' REALTIME_SECRET."""
    from tidings.adapters.jwt_tokens import JwtTokens

    path = ctx.work / f"tokens-{n}.txt"
    if not path.exists():
        tokens = JwtTokens(ctx.secret)
        path.write_text("\n".join(tokens.issue(str(i), ttl=6 * 3600) for i in range(n)) + "\n")
    return path


def _publisher(
    ctx: Context, server: Server, name: str, *, count: int, rate: float, max_seconds: float,
    channel: str, users: int, seed: int,
) -> Child:
    argv = [ctx.python, "-m", "bench.workers.publisher", server.publisher_kind,
            "--count", str(count), "--rate", f"{rate:g}", "--max-seconds", f"{max_seconds:g}",
            "--channel", channel, "--users", str(users), "--seed", str(seed),
            *server.publisher_args]
    return ctx.procs.start(name, argv, core=LOAD_CORE, env=server.publisher_env, cwd=ctx.work,
                           pipe=True)


def _summary(ctx: Context, child: Child, timeout: float) -> dict[str, Any]:
    """The publisher's report; ``{}`` if it has not finished within ``timeout`` (a server that
    takes a request only once it has queued every delivery can hold it past the measurement)."""
    deadline = time.monotonic() + timeout
    summary: dict[str, Any] = {}
    try:
        while True:
            line = child.readline(max(1.0, deadline - time.monotonic()))
            if line is None:
                break
            if line.startswith("{"):
                summary = json.loads(line)
        child.popen.wait(10)
    except (TimeoutError, subprocess.TimeoutExpired):
        pass
    ctx.procs.stop(child)
    if not summary and child.popen.returncode not in (0, -signal.SIGTERM):
        raise RuntimeError(f"{child.name} failed:\n{child.tail()}")
    return summary


def warm_up(
    ctx: Context, server: Server, loadgen: LoadGen, *, channel: str, users: int, expected: int
) -> None:
    """Publish slowly until ``expected`` deliveries arrived: topics exist, consumers are placed."""
    child = _publisher(ctx, server, f"warmup-{server.system}", count=5000, rate=20,
                       max_seconds=120, channel=channel, users=users, seed=99)
    try:
        result = loadgen.measure(expected, timeout=120, idle=120)
    finally:
        ctx.procs.stop(child)
    if result["count"] < expected:
        raise RuntimeError(
            f"{server.system}: {result['count']} of {expected} warm-up deliveries in 120 s:\n"
            f"{server.child.tail()}"
        )
    time.sleep(1.0)


def phase(
    ctx: Context, server: Server, loadgen: LoadGen, *, scenario: str, case: str, rate: float,
    count: int, max_seconds: float, channel: str, users: int, per_message: int, seed: int,
    profile: bool = False, backlog: bool = False,
) -> dict[str, Any]:
    """Publish ``count`` messages at ``rate`` (0: flat out) and measure what the clients get.

    With ``backlog`` the server is stopped (SIGSTOP) while the publisher runs, then resumed: it
    finds every message waiting in Kafka, and ``throughput`` is how fast it delivers them (first
    to last delivery), whatever the publisher's own speed. Otherwise ``throughput`` runs from
    the first message's publish stamp to the last delivery.

    Returns the load generator's summary plus the publisher's, the server's CPU use over the
    phase, and ``lost``: deliveries expected from what was published that never arrived.
    """
    name = f"publisher-{_slug(scenario, case)}-{server.system}"
    expected = count * per_message
    timeout = max_seconds + DRAIN_SECONDS
    publisher = None
    spy = None
    try:
        if backlog:
            os.killpg(server.child.pid, signal.SIGSTOP)  # the workers too
            try:
                publisher = _publisher(ctx, server, name, count=count, rate=rate,
                                       max_seconds=max_seconds, channel=channel, users=users,
                                       seed=seed)
                published = _summary(ctx, publisher, timeout=max_seconds + 120)
                expected = int(published.get("sent", count)) * per_message
                # A resumed Kafka client may pause to rejoin its group before it delivers.
                loadgen.start_measure(expected, timeout, idle=BACKLOG_IDLE_SECONDS)
                cpu_before = server.child.cpu_seconds()
                load_cpu_before = loadgen.child.cpu_seconds()
                started = time.monotonic()
            finally:
                os.killpg(server.child.pid, signal.SIGCONT)
            if profile:
                spy = _start_profile(ctx, server, _slug(scenario, case))
            result = loadgen.result(timeout)
        else:
            cpu_before, load_cpu_before = server.child.cpu_seconds(), loadgen.child.cpu_seconds()
            started = time.monotonic()
            publisher = _publisher(ctx, server, name, count=count, rate=rate,
                                   max_seconds=max_seconds, channel=channel, users=users,
                                   seed=seed)
            if profile:
                spy = _start_profile(ctx, server, _slug(scenario, case))
            result = loadgen.measure(expected, timeout=timeout, idle=LIVE_IDLE_SECONDS)
        wall = time.monotonic() - started
        cpu = server.child.cpu_seconds() - cpu_before
        load_cpu = loadgen.child.cpu_seconds() - load_cpu_before
        if not backlog:
            assert publisher is not None
            published = _summary(ctx, publisher, timeout=PUBLISHER_GRACE_SECONDS)
            expected = int(published.get("sent", count)) * per_message
    finally:
        if publisher is not None:
            ctx.procs.stop(publisher)
        if spy is not None:
            _finish_profile(ctx, spy, server, _slug(scenario, case))
    hist = result.pop("hist", None) or []
    result.update(
        scenario=scenario, case=case, system=server.system, offered_rate=rate,
        backlog=backlog, published=published, server_cpu_s=cpu,
        server_cpu_share=cpu / wall if wall else 0.0,
        loadgen_cpu_share=load_cpu / wall if wall else 0.0,
        loadgen_busy=load_cpu / active if (active := max(result["span_s"],
                                                        result["from_publish_s"])) else 0.0,
        deliveries_per_cpu_s=result["count"] / cpu if cpu else 0.0,
        throughput=result["rate"] if backlog or rate else result["rate_from_publish"],
        lost=max(0, expected - int(result["count"])),
    )
    ctx.results.runs.append(result)
    ctx.results.distributions[f"{scenario}/{case}/{server.system}"] = hist
    if not published:
        ctx.results.problem(
            f"{scenario}/{case}/{server.system}: the publisher was still waiting for the server "
            f"to take its messages {PUBLISHER_GRACE_SECONDS:g} s after the measurement ended"
        )
    if result["lost"]:
        cut = result["reason"] == "timeout"
        ctx.results.problem(
            f"{scenario}/{case}/{server.system}: {result['lost']} of {expected} deliveries "
            + (f"still queued when the measurement stopped after {timeout:g} s" if cut else
               f"missing ({result['reason']}, {result['closed']} clients closed)")
        )
    if published.get("errors"):
        ctx.results.problem(f"{scenario}/{case}/{server.system}: {published['errors']} "
                            "publish errors")
    return result


CLIENT_BOUND = 0.85
"""Load-generator CPU share (of the delivery window) above which deliveries/s may be its limit."""


def note_client_bound(ctx: Context, scenario: str, case: str, system: str,
                      result: dict[str, Any]) -> None:
    if result["loadgen_busy"] > CLIENT_BOUND:
        ctx.results.note(scenario, case, system,
                         f"the load generator was {result['loadgen_busy']:.0%} busy at "
                         "saturation: deliveries/s may be the client's limit; read the "
                         "per-CPU-second figure")


def _slug(*parts: str) -> str:
    text = "-".join(parts).lower().replace(",", "")
    return "-".join(text.split())


def _start_profile(ctx: Context, server: Server, label: str) -> Child:
    output = ctx.work / "profiles" / f"{label}-{server.system}.txt"
    output.parent.mkdir(parents=True, exist_ok=True)
    argv = [str(Path(ctx.python).with_name("py-spy")), "record", "--pid", str(server.child.pid),
            "--rate", "200", "--format", "raw", "--nonblocking", "--output", str(output)]
    return ctx.procs.start(f"py-spy-{label}-{server.system}", argv, core=LOAD_CORE)


def _finish_profile(ctx: Context, spy: Child, server: Server, label: str) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(spy.pid, signal.SIGINT)  # like Ctrl+C: py-spy writes what it sampled
    with contextlib.suppress(subprocess.TimeoutExpired):
        spy.popen.wait(30)
    ctx.procs.stop(spy)
    output = ctx.work / "profiles" / f"{label}-{server.system}.txt"
    if output.exists():
        text = render(summarize(output, top=25))
        (output.with_suffix(".summary.txt")).write_text(text + "\n")
        ctx.log(f"profile of {server.system} during {label}: {output}\n{text}")
