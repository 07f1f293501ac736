"""tidings processes for end-to-end tests: started for real, stopped by signal, output kept."""

from __future__ import annotations

import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

TIDINGS = str(Path(sys.executable).with_name("tidings"))
_URL = re.compile(r"demo page\s+(http://\S+?)/?$")


class _Lines:
    """Collects a pipe's lines on a thread, so tests can wait for one with a timeout."""

    def __init__(self, pipe: object) -> None:
        self.lines: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: object) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            self.lines.append(line.rstrip("\n"))
            self._queue.put(line.rstrip("\n"))
        self._queue.put(None)

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no line matching {pattern.pattern!r} in {timeout}s")
            try:
                line = self._queue.get(timeout=remaining)
            except queue.Empty:
                continue
            if line is None:
                raise EOFError(f"process ended before printing {pattern.pattern!r}")
            match = pattern.search(line)
            if match:
                return match

    def join(self, timeout: float = 5) -> None:
        self._thread.join(timeout)


def process_env(**overrides: str) -> dict[str, str]:
    """The environment for a tidings process: this one's, minus stray tidings settings."""
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REALTIME_", "KAFKA_", "PUSHER_"))
    }
    env.update(overrides)
    return env


class TidingsProcess:
    """A ``tidings`` command running in the background."""

    def __init__(self, args: Sequence[str], env: dict[str, str], cwd: str | None = None) -> None:
        self.args = [TIDINGS, *args]
        self.process = subprocess.Popen(
            self.args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            bufsize=1,
        )
        self.stdout = _Lines(self.process.stdout)
        self.stderr = _Lines(self.process.stderr)

    def signal(self, signum: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signum)

    def wait(self, timeout: float = 20) -> int:
        code = self.process.wait(timeout)
        self.stdout.join()
        self.stderr.join()
        return code

    def stop(self, timeout: float = 20) -> int:
        """SIGTERM, then the exit status (SIGKILL after ``timeout`` and raise)."""
        self.signal(signal.SIGTERM)
        try:
            return self.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def kill(self) -> None:
        """SIGKILL: the process dies without any chance to clean up."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()

    def output(self) -> str:
        return "\n".join([*self.stdout.lines, "--- stderr ---", *self.stderr.lines])


class Gateway(TidingsProcess):
    """``tidings serve`` on an ephemeral port; ``url`` once it listens."""

    def __init__(
        self,
        env: dict[str, str],
        *args: str,
        ready_timeout: float = 60,
        options: Sequence[str] = (),
    ) -> None:
        """``args`` go to ``serve``, ``options`` before it (``--log-level debug``)."""
        super().__init__([*options, "serve", "--port", "0", *args], env)
        try:
            match = self.stdout.wait_for(_URL, ready_timeout)
        except (TimeoutError, EOFError) as exc:
            self.kill()
            raise RuntimeError(f"gateway did not start: {exc}\n{self.output()}") from None
        self.url = match.group(1)
        self.ws_url = self.url.replace("http://", "ws://", 1) + "/ws"
