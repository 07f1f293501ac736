"""Processes the harness starts: pinned to a core, logged to a file, always cleaned up.

Every child runs in its own session, so stopping it stops whatever it started too. ``Processes``
is a context manager; on leaving it (normally, on an error, or on Ctrl+C) every child still
running gets SIGTERM, then SIGKILL after a grace period.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from queue import Empty, Queue
from types import TracebackType

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _cpu_times() -> tuple[int, int]:
    """(idle, total) jiffies over all cores, from /proc/stat."""
    fields = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return idle, sum(fields[:8])


def cpu_busy(seconds: float = 1.0) -> float:
    """The share of all cores busy over the next ``seconds`` (0..1)."""
    idle_before, total_before = _cpu_times()
    time.sleep(seconds)
    idle_after, total_after = _cpu_times()
    total = total_after - total_before
    return 1 - (idle_after - idle_before) / total if total else 0.0


def wait_until_quiet(threshold: float, max_wait: float) -> float:
    """Wait (up to ``max_wait`` s) until other processes use under ``threshold`` of the CPU;
    returns the last reading. Benchmarks on a busy machine measure the other processes too."""
    deadline = time.monotonic() + max_wait
    busy = cpu_busy(2.0)
    while busy > threshold and time.monotonic() < deadline:
        busy = cpu_busy(5.0)
    return busy


def can_pin() -> bool:
    """Pinning needs taskset and at least two cores (SUT on core 0, load on core 1)."""
    return shutil.which("taskset") is not None and (os.cpu_count() or 1) >= 2


class Child:
    """One started process, with its output lines (if piped) readable with a timeout."""

    def __init__(self, name: str, popen: subprocess.Popen[str], log: Path) -> None:
        self.name = name
        self.popen = popen
        self.log = log
        self._lines: Queue[str | None] = Queue()
        if popen.stdout is not None:
            threading.Thread(target=self._pump, daemon=True, name=f"read-{name}").start()

    @property
    def pid(self) -> int:
        return self.popen.pid

    def _pump(self) -> None:
        assert self.popen.stdout is not None
        for line in self.popen.stdout:
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def readline(self, timeout: float) -> str | None:
        """The next stdout line, or None at end of output; ``TimeoutError`` if none in time."""
        try:
            return self._lines.get(timeout=timeout)
        except Empty:
            raise TimeoutError(f"{self.name}: no output within {timeout:g} s") from None

    def write(self, line: str) -> None:
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def alive(self) -> bool:
        return self.popen.poll() is None

    def tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def rss_kib(self) -> int:
        """Resident memory now (VmRSS of /proc/PID/status), in KiB."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError(f"{self.name}: no VmRSS")

    def cpu_seconds(self) -> float:
        """User + system CPU time used so far by the process (all its threads) and the live
        processes of its group (the workers of ``tidings serve --workers``)."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                text = stat.read_text()
            except OSError:  # ended meanwhile
                continue
            fields = text[text.rindex(")") + 2 :].split()
            if stat.parent.name == str(self.pid) or int(fields[2]) == self.pid:
                total += int(fields[11]) + int(fields[12])
        return total / CLOCK_TICKS

    def stop(self, grace: float = 5.0) -> None:
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.popen.pid, signal.SIGKILL)
                self.popen.wait(5)
        for stream in (self.popen.stdin, self.popen.stdout):
            if stream is not None:
                with contextlib.suppress(OSError):
                    stream.close()


class Processes:
    """Starts children pinned to cores; stops all of them on exit."""

    def __init__(self, logs: Path, *, pin: bool) -> None:
        self.logs = logs
        self.pin = pin
        self.children: list[Child] = []
        logs.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Processes:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        core: int | None,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        pipe: bool = False,
    ) -> Child:
        """Start ``argv`` on ``core`` (when pinning); stdout piped if ``pipe``, else logged."""
        command = list(argv)
        if self.pin and core is not None:
            command = ["taskset", "-c", str(core), *command]
        log = self.logs / f"{name}.log"
        attempt = 1
        while log.exists():  # a retry keeps the failed attempt's log
            attempt += 1
            log = self.logs / f"{name}.{attempt}.log"
        handle = log.open("w")
        popen = subprocess.Popen(
            command,
            stdin=subprocess.PIPE if pipe else subprocess.DEVNULL,
            stdout=subprocess.PIPE if pipe else handle,
            stderr=handle,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            text=True,
            bufsize=1,
            start_new_session=True,
        )
        handle.close()
        child = Child(name, popen, log)
        self.children.append(child)
        return child

    def stop(self, child: Child) -> None:
        child.stop()
        if child in self.children:
            self.children.remove(child)

    def stop_all(self) -> None:
        while self.children:
            self.children.pop().stop()


def wait_http(url: str, child: Child, timeout: float) -> None:
    """Wait until ``url`` answers 200, failing early if ``child`` died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not child.alive():
            raise RuntimeError(f"{child.name} exited ({child.popen.returncode}):\n{child.tail()}")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{child.name} did not answer {url} within {timeout:g} s:\n{child.tail()}")


@contextlib.contextmanager
def terminate_on_signals() -> Iterator[None]:
    """Turn SIGTERM into KeyboardInterrupt so the same cleanup runs as for Ctrl+C."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
