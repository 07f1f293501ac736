"""Fixtures for the framework examples: a real gateway, the settings an app needs to publish
into it, and the app itself as a process of its own (a dev server, gunicorn, uvicorn, a Celery
worker), started for real and stopped at the end.

Every example test runs twice, as ``live_gateway`` does: once with the gateway on the memory
broker, the app publishing through it (``REALTIME_BROKER=gateway``, the laptop set-up), and once
with both on Kafka (production).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from ..support.kafka import free_port

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
BIN = Path(sys.executable).parent
"""The venv's scripts: gunicorn, uvicorn, celery."""


class AppProcess:
    """An example app's server or worker, running in its own process group (gunicorn and Celery
    fork workers; stopping the group stops them all)."""

    def __init__(self, args: Sequence[str], env: dict[str, str], cwd: Path, log: Path) -> None:
        self.args = list(args)
        self.log = log
        self._log_file = log.open("wb")
        self.process = subprocess.Popen(
            self.args,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_until(self, ready: Callable[[], bool], timeout: float, what: str) -> None:
        """Poll ``ready`` until it is true; fail with the app's output if the app ends or
        ``timeout`` passes first."""
        deadline = time.monotonic() + timeout
        while not ready():
            if self.process.poll() is not None:
                raise AssertionError(
                    f"{self.args[0]} exited {self.process.returncode} before {what}:\n"
                    + self.output()
                )
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {timeout:g}s:\n{self.output()}")
            time.sleep(0.05)

    def wait_for_http(self, url: str, timeout: float = 60) -> None:
        """Until ``url`` answers at all (any status): the server is listening."""

        def answers() -> bool:
            try:
                httpx.get(url, timeout=1)
            except httpx.TransportError:
                return False
            return True

        self.wait_until(answers, timeout, f"answer from {url}")

    def stop(self, timeout: float = 20) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        else:  # the leader is gone; make sure no forked worker outlives the test
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self._log_file.close()


async def off_loop(call: Callable[..., Any], *args: Any) -> Any:
    """A blocking HTTP call, in a thread: the WebSocket clients keep running meanwhile."""
    return await trio.to_thread.run_sync(partial(call, *args))


@pytest.fixture
def start_app(tmp_path: Path) -> Iterator[Callable[..., AppProcess]]:
    """``start_app(args, env, cwd=EXAMPLES/...)``: an app process, stopped after the test."""
    started: list[AppProcess] = []

    def start(args: Sequence[str], env: dict[str, str], cwd: Path) -> AppProcess:
        app = AppProcess(args, env, cwd, tmp_path / f"app-{len(started)}.log")
        started.append(app)
        return app

    yield start
    for app in reversed(started):
        app.stop()


@pytest.fixture
def app_port() -> int:
    return free_port()
