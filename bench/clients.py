"""The Go load generator (bench/loadgen), driven from Python: connect N clients, then measure."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from .core import LOAD_CORE, Context
from .procs import Child
from .systems import Server

MAX_FAILED_SHARE = 0.01
"""Clients that may fail to connect (a server refusing a few handshakes under a connection
storm) before the run is abandoned; the rest are measured, and the failures reported."""


class LoadGen:
    """N WebSocket clients in one Go process on the load core; see bench/loadgen/main.go."""

    def __init__(self, ctx: Context, child: Child, n: int) -> None:
        self.ctx = ctx
        self.child = child
        self.n = n
        self.ready: dict[str, Any] = {}
        self.connected = 0

    @classmethod
    def connect(
        cls, ctx: Context, server: Server, *, n: int, channel: str, name: str,
        tokens: Path | None = None,
    ) -> LoadGen:
        """Open ``n`` clients on ``channel`` (``{i}``: the client's index) until subscribed."""
        argv = [str(ctx.loadgen), "-url", server.ws_url, "-proto", server.proto, "-n", str(n),
                "-channel", channel]
        if tokens is not None:
            argv += ["-tokens", str(tokens)]
        env = ctx.env(GOMAXPROCS="1")
        child = ctx.procs.start(f"loadgen-{name}", argv, core=LOAD_CORE, env=env, pipe=True)
        loadgen = cls(ctx, child, n)
        loadgen.ready = loadgen._next("ready", timeout=60 + n / 50)
        loadgen.connected = int(loadgen.ready.get("connected", 0))
        if loadgen.connected < n * (1 - MAX_FAILED_SHARE):
            raise RuntimeError(
                f"{name}: only {loadgen.connected} of {n} clients subscribed "
                f"({loadgen.ready.get('first_error')})"
            )
        if loadgen.connected < n:
            ctx.results.problem(
                f"{name}: {n - loadgen.connected} of {n} clients could not connect "
                f"({loadgen.ready.get('first_error')}); measured with {loadgen.connected}"
            )
        return loadgen

    def _next(self, event: str, timeout: float) -> dict[str, Any]:
        while True:
            line = self.child.readline(timeout)
            if line is None:
                raise RuntimeError(f"{self.child.name} exited:\n{self.child.tail()}")
            if line.startswith("{"):
                message: dict[str, Any] = json.loads(line)
                if message.get("event") == event:
                    return message

    def measure(self, expected: int, timeout: float, idle: float = 5.0) -> dict[str, Any]:
        """Count deliveries until ``expected`` arrived, ``timeout`` s passed, or ``idle`` s of
        silence after the first; the summary has rate, latency quantiles and a histogram."""
        self.start_measure(expected, timeout, idle)
        return self.result(timeout)

    def start_measure(self, expected: int, timeout: float, idle: float = 5.0) -> None:
        self.child.write(f"measure {expected} {timeout:.3f} {idle:.3f}")

    def result(self, timeout: float) -> dict[str, Any]:
        return self._next("result", timeout=timeout + 30)

    def close(self) -> None:
        if self.child.alive():
            try:
                self.child.write("quit")
                self.child.popen.wait(15)
            except (OSError, subprocess.TimeoutExpired):
                pass  # stop() below ends it either way
        self.ctx.procs.stop(self.child)


class DeliveryCheckFailed(RuntimeError):
    """A client lost, doubled or reordered a message: the run's figures cannot be trusted."""


def check_deliveries(result: dict[str, Any], *, channel: str, what: str) -> None:
    """Every client got each message published to its channel once, in order, or this raises,
    naming the first client that did not and how.

    ``result`` is a phase's (``scenarios.common.phase``): the load generator's ``check`` (each
    client's count of the publisher's run, and the clients with a gap, a duplicate or a reorder,
    see bench/loadgen/checker.go) and the publisher's report (``published``: its ``run`` and how
    many messages went to each channel). ``channel`` is the clients' channel template (``{i}``:
    the client's index). The per-client lists are dropped from ``result`` once checked: they are
    not figures, and would swell results.json.
    """
    check: dict[str, Any] = result.get("check") or {}
    published: dict[str, Any] = result.get("published") or {}
    counts: list[int] = check.pop("counts", None) or []
    per_channel: dict[str, int] = published.pop("per_channel", None) or {}
    if not check or "run" not in published:
        raise DeliveryCheckFailed(f"{what}: no per-client check (load generator or publisher "
                                  "too old, or the publisher did not report)")
    failures: list[str] = []
    if check["bad_clients"]:
        failures.append(
            f"{check['bad_clients']} clients saw a gap or a repeat ({check['gaps']} gaps, "
            f"{check['backwards']} repeated or late); first: {check['first']}"
        )
    if check["unchecked"]:
        failures.append(f"{check['unchecked']} messages carried no run/worker/seq")
    expected_any = any(per_channel.values())
    if expected_any and check["run"] != published["run"]:
        failures.append(f"no client got a message of this publisher's run {published['run']} "
                        f"(the latest run seen was {check['run']})")
    else:
        wrong = [
            (i, got, per_channel.get(channel.replace("{i}", str(i)), 0))
            for i, got in enumerate(counts)
            if got >= 0 and got != per_channel.get(channel.replace("{i}", str(i)), 0)
        ]
        if wrong:
            i, got, want = wrong[0]
            how = "lost" if got < want else "extra"
            failures.append(
                f"{len(wrong)} clients got the wrong number of messages; first: client {i} "
                f"({channel.replace('{i}', str(i))}) got {got} of {want} ({abs(want - got)} {how})"
            )
    if failures:
        ended = result.get("reason")
        if ended and ended != "complete":
            failures.append(f"the measurement ended on {ended} (a timeout: still queued, perhaps)")
        raise DeliveryCheckFailed(f"{what}: " + "; ".join(failures))
