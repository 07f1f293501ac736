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
