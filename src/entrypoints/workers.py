"""``tidings serve --workers N``: N gateway processes on one port, kept running, stopped together.

A gateway is one trio loop on one core. The supervisor here starts N of them as fresh processes
(``python -m tidings serve``, never a fork: each builds its own Kafka clients and threads), every
one listening on the same port with ``SO_REUSEPORT`` so that the kernel spreads new connections
among them. Each worker is its own gateway node, ``BASE-wI``, stable across its restarts, so that
its consumer group and its presence survive one (``worker_node``).

- Start: the supervisor binds the port first (without listening: it never takes a connection),
  which learns the port when 0 was asked, tells a busy port before any worker starts, and keeps
  the port for the workers while one restarts. It announces the URLs once every worker listens
  (each tells it through a socket pair, ``--supervisor-fd``, whose closing stops it if the
  supervisor dies).
- A worker that exits is started again after a back-off (the client's rule, ``Backoff``:
  exponential with jitter, capped; the count starts again after a worker ran ``STABLE_AFTER``
  seconds), one line each time. A worker that exits 2 was refused its configuration: starting
  it again cannot help, so every worker is stopped and the supervisor exits 2.
- SIGTERM or SIGINT: forwarded to every worker as SIGTERM; each drains as one gateway does
  (clients get 1001, the feed commits). A worker still running after ``STOP_TIMEOUT`` is killed
  and the supervisor exits 1 saying so; otherwise 0.
- Metrics: the workers share a private ``PROMETHEUS_MULTIPROC_DIR`` (made empty here, removed at
  the end), so ``/metrics`` of any worker shows them all (ADR 0032).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import AsyncIterator, Callable, Mapping, Sequence

import attrs
import trio

from ..adapters.prometheus import forget_process
from ..client.backoff import Backoff
from .serve import DRAIN_TIMEOUT

log = logging.getLogger("tidings.workers")

RESTART_BACKOFF = Backoff(min_delay=0.5, max_delay=30.0)
"""Seconds before a worker that exited starts again: 0.5-1 s after an exit, doubling with each
exit in a row up to 15-30 s (0.25-0.5 s when it had run ``STABLE_AFTER``)."""

STABLE_AFTER = 60.0
"""A worker that ran this many seconds before it exited had a failure of its own, not a crash
loop: its back-off count starts again."""

STOP_TIMEOUT = DRAIN_TIMEOUT + 5.0
"""Seconds the workers have to drain after SIGTERM (each gives its clients ``DRAIN_TIMEOUT``)."""

CONFIGURATION_REFUSED = 2
"""A command's exit status for bad arguments or configuration (cli.py)."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity), what ``--workers auto`` starts."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux: every core the machine has
        return os.cpu_count() or 1


def broker_refusal(given: str, count: int, broker: str) -> str | None:
    """Why ``count`` workers (asked by ``given``: ``--workers 2``) cannot run on ``broker``,
    and what to do; None when they can."""
    if count > 1 and broker == "memory":
        return (
            f"refusing {given} with the memory broker: each worker would have its own "
            "broker, so a broadcast and its history would reach one worker's clients only; "
            "use Kafka (--broker kafka, REALTIME_BROKER=kafka), or one worker"
        )
    return None


def worker_node(base: str, index: int) -> str:
    """The node id of worker ``index`` (from 1): ``BASE-wI``, where ``BASE`` is the gateway's
    node id (``REALTIME_NODE_ID``, or ``HOST-PORT``)."""
    return f"{base}-w{index}"


def failures_after(failures: int, ran: float) -> int:
    """Failures in a row counted once a worker that had ``failures`` before ran ``ran`` seconds
    and exited: a stable run starts the count again."""
    return 0 if ran >= STABLE_AFTER else failures + 1


def reserve_port(host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` with ``SO_REUSEPORT``, not listening: the port is learnt
    (0 asked) and held for the workers, and a busy port is an ``OSError`` before any starts."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


@attrs.define
class Worker:
    """One worker: its place, its node id, and the process running it now (if any)."""

    index: int
    node: str
    process: trio.Process | None = None
    ready: trio.Event = attrs.Factory(trio.Event)
    """Set once the worker's first process listens."""


@attrs.frozen
class Plan:
    """What the supervisor runs: the command of a worker without its node id, its environment."""

    command: tuple[str, ...]
    env: Mapping[str, str]
    metrics_dir: str


class Supervisor:
    """Runs the workers of ``plan`` until a signal; see the module doc."""

    def __init__(self, plan: Plan, nodes: Sequence[str], on_ready: Callable[[], None]) -> None:
        self._plan = plan
        self._on_ready = on_ready
        self.workers = [Worker(index, node) for index, node in enumerate(nodes, start=1)]
        self._stopping = trio.Event()
        self._refused: Worker | None = None

    async def run(self) -> int:
        """Run every worker until SIGTERM or SIGINT (``on_ready`` is called once every worker
        listens); the exit status of the command."""
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async with trio.open_nursery() as workers:
                for worker in self.workers:
                    workers.start_soon(self._keep_running, worker)
                async with trio.open_nursery() as helpers:
                    helpers.start_soon(self._wait_for_signal, signals)
                    helpers.start_soon(self._tell_ready)
                    await self._stopping.wait()
                    helpers.cancel_scope.cancel()
                workers.cancel_scope.deadline = trio.current_time() + STOP_TIMEOUT
                for worker in self.workers:
                    _signal(worker, signal.SIGTERM)
            if workers.cancel_scope.cancelled_caught:
                return await self._kill_the_rest()
        if self._refused is not None:
            log.error(
                "worker %s exited %d (its configuration was refused): stopped every worker",
                self._refused.node,
                CONFIGURATION_REFUSED,
            )
            return CONFIGURATION_REFUSED
        log.info("every worker stopped")
        return 0

    async def _wait_for_signal(self, signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            log.info("received %s: stopping %d workers", signal.Signals(signum).name, len(self))
            break
        self._stopping.set()

    async def _tell_ready(self) -> None:
        for worker in self.workers:
            await worker.ready.wait()
        self._on_ready()

    async def _keep_running(self, worker: Worker) -> None:
        failures = 0
        while not self._stopping.is_set():
            began = trio.current_time()
            status = await self._run_once(worker)
            if self._stopping.is_set():
                return
            if status == CONFIGURATION_REFUSED:
                self._refused = worker
                self._stopping.set()
                return
            ran = trio.current_time() - began
            failures = failures_after(failures, ran)
            delay = RESTART_BACKOFF.delay(failures)
            log.warning(
                "worker %s exited %s after %.1fs; starting it again in %.1fs",
                worker.node,
                _status(status),
                ran,
                delay,
            )
            with trio.move_on_after(delay):
                await self._stopping.wait()

    async def _run_once(self, worker: Worker) -> int:
        """Start the worker's process, wait for it to exit; its exit status.

        The worker gets one end of a socket pair (``--supervisor-fd``): it sends ``ready`` once
        listening, and stops when the supervisor's end closes, which the kernel does when the
        supervisor exits however it exits (``serve.run_gateway``)."""
        ours, theirs = socket.socketpair()
        try:
            process = await trio.lowlevel.open_process(
                [*self._plan.command, *worker_arguments(worker), str(theirs.fileno())],
                env=dict(self._plan.env),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        worker.process = process
        if self._stopping.is_set():  # the signal went out while this one was starting
            _signal(worker, signal.SIGTERM)
        try:
            async with trio.SocketStream(trio.socket.from_stdlib_socket(ours)) as link:
                with contextlib.suppress(trio.BrokenResourceError):
                    if (await link.receive_some(64)).startswith(b"ready"):
                        worker.ready.set()
                return await process.wait()
        finally:
            if process.returncode is not None:
                forget_process(self._plan.metrics_dir, process.pid)

    async def _kill_the_rest(self) -> int:
        late = [w for w in self.workers if w.process is not None and w.process.returncode is None]
        for worker in late:
            _signal(worker, signal.SIGKILL)
        for worker in late:
            assert worker.process is not None
            await worker.process.wait()  # SIGKILL cannot be refused: at once
            forget_process(self._plan.metrics_dir, worker.process.pid)
        names = ", ".join(worker.node for worker in late) or "none"
        log.error("workers still running %gs after SIGTERM, killed: %s", STOP_TIMEOUT, names)
        return 1

    def __len__(self) -> int:
        return len(self.workers)


def worker_arguments(worker: Worker) -> list[str]:
    """What a worker's command adds for it, up to its socket's descriptor: its node id, and in
    demo mode, one demo feed for the whole gateway (worker 1's), not one per worker."""
    extra = ["--no-demo-feed"] if worker.index > 1 else []
    return ["--node-id", worker.node, *extra, "--supervisor-fd"]


def _signal(worker: Worker, signum: int) -> None:
    if worker.process is not None and worker.process.returncode is None:
        worker.process.send_signal(signum)


def _status(code: int) -> str:
    return f"on {signal.Signals(-code).name}" if code < 0 else f"with status {code}"


def worker_command(
    *, log_level: str, host: str, port: int, broker: str, demo: bool, demo_public: bool
) -> tuple[str, ...]:
    """The command of one worker, without its node id: this interpreter, ``-m tidings``."""
    command = [sys.executable, "-m", "tidings", "--log-level", log_level, "serve"]
    command += ["--workers", "1", "--host", host, "--port", str(port), "--broker", broker]
    if demo:
        command.append("--demo")
    if demo_public:
        command.append("--demo-public")
    return tuple(command)


def supervise(command: tuple[str, ...], nodes: Sequence[str], on_ready: Callable[[], None]) -> int:
    """Run the workers (see the module doc) in a fresh metrics directory; the exit status."""
    metrics_dir = tempfile.mkdtemp(prefix="tidings-metrics-")
    try:
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        return trio.run(Supervisor(Plan(command, env, metrics_dir), nodes, on_ready).run)
    finally:
        shutil.rmtree(metrics_dir, ignore_errors=True)
