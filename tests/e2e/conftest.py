"""Fixtures for the browser tests: a real gateway process and Debian's headless Chromium.

The gateway runs as ``tidings serve --port 0`` (an ephemeral port, read back from the URL it
prints). Chromium is Debian's (``apt-get install chromium``), not Playwright's own download;
without it the browser tests are skipped.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path(os.environ.get("TIDINGS_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Background tabs must keep their timers: several pages run side by side in one test.
    "--disable-background-timer-throttling",
    "--disable-renderer-backgrounding",
    "--disable-backgrounding-occluded-windows",
]
API_KEY = "test-key"
SECRET = "browser-tests-secret-0123456789abcdef"
START_TIMEOUT = 15.0
STOP_TIMEOUT = 15.0
URL_LINE = re.compile(r"^\s*demo page\s+(http://\S+?)/?\s*$", re.MULTILINE)


@dataclass
class Gateway:
    """A running ``tidings serve`` process and how to talk to it over HTTP."""

    url: str
    process: subprocess.Popen[bytes]
    log: Path
    env: dict[str, str]

    def post(self, path: str, body: Any, *, key: str | None = API_KEY) -> Any:
        headers = {"content-type": "application/json"}
        if key is not None:
            headers["authorization"] = f"Bearer {key}"
        request = urllib.request.Request(
            self.url + path, data=json.dumps(body).encode(), headers=headers, method="POST"
        )
        with urllib.request.urlopen(request, timeout=10) as response:
            return json.loads(response.read())

    def broadcast(self, channel: str, event: str, data: Any) -> Any:
        """``POST /broadcast`` with the API key, as a backend service would."""
        return self.post("/broadcast", {"channel": channel, "event": event, "data": data})

    def health(self) -> Any:
        with urllib.request.urlopen(self.url + "/healthz", timeout=10) as response:
            return json.loads(response.read())

    def wait_for_connections(self, count: int, timeout: float = 10.0) -> None:
        """Wait until the gateway holds exactly ``count`` client connections."""
        deadline = time.monotonic() + timeout
        while (held := self.health()["connections"]) != count:
            if time.monotonic() > deadline:
                pytest.fail(f"the gateway holds {held} connections, not {count}, after {timeout} s")
            time.sleep(0.05)

    def token(self, user: str, *args: str) -> str:
        """A token made by ``tidings token`` with the gateway's secret."""
        result = subprocess.run(
            [str(_cli()), "token", user, *args],
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
            cwd=self.log.parent,
        )
        return result.stdout.strip()


NETWORK_NOISE = ("Failed to load resource", "WebSocket connection to")


def _console_error(page: Any, message: Any) -> None:
    if message.type == "error" and not message.text.startswith(NETWORK_NOISE):
        page.errors.append(message.text)


def _cli() -> Path:
    return Path(sys.executable).with_name("tidings")


def _environment(**extra: str) -> dict[str, str]:
    env = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("REALTIME_", "KAFKA_"))
    }
    env.update(REALTIME_API_KEY=API_KEY, REALTIME_SECRET=SECRET, REALTIME_BROKER="memory", **extra)
    return env


def _start_gateway(workdir: Path, *args: str, **env: str) -> Gateway:
    workdir.mkdir(parents=True, exist_ok=True)
    out, log = workdir / "stdout.txt", workdir / "stderr.txt"
    environment = _environment(**env)
    with out.open("wb") as stdout, log.open("wb") as stderr:
        # cwd is an empty directory, so no stray .env changes the configuration.
        process = subprocess.Popen(
            [str(_cli()), "serve", "--port", "0", *args],
            stdout=stdout,
            stderr=stderr,
            env=environment,
            cwd=workdir,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        match = URL_LINE.search(out.read_text(errors="replace"))
        if match:
            break
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            process.wait()
            pytest.fail(
                f"gateway did not start (exit {process.returncode}):\n"
                f"{out.read_text(errors='replace')}\n{log.read_text(errors='replace')}"
            )
        time.sleep(0.05)
    gateway = Gateway(match.group(1), process, log, environment)
    assert gateway.health()["status"] == "ok"
    return gateway


def _stop_gateway(gateway: Gateway) -> None:
    gateway.process.send_signal(signal.SIGTERM)
    try:
        code = gateway.process.wait(timeout=STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        gateway.process.kill()
        gateway.process.wait()
        pytest.fail(f"gateway did not stop within {STOP_TIMEOUT} s of SIGTERM")
    assert code == 0, f"gateway exited {code}:\n{gateway.log.read_text(errors='replace')}"


@pytest.fixture(scope="session")
def demo_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A demo-mode gateway (memory broker) shared by the browser tests."""
    running = _start_gateway(
        tmp_path_factory.mktemp("gateway"), "--demo", "--node-id", "browser-test"
    )
    try:
        yield running
    finally:
        _stop_gateway(running)


@pytest.fixture
def start_gateway(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Start more gateways for one test: ``start_gateway("--demo", REALTIME_HISTORY_SIZE="2")``.

    Without ``--demo`` there are no /demo/* endpoints and tokens come from ``tidings token``.
    Every gateway started is stopped (and must exit 0) at the end of the test.
    """
    started: list[Gateway] = []

    def start(*args: str, **env: str) -> Gateway:
        workdir = tmp_path / f"gateway-{len(started)}"
        node = f"browser-test-{len(started) + 1}"
        running = _start_gateway(workdir, "--node-id", node, *args, **env)
        started.append(running)
        return running

    yield start
    for running in started:
        _stop_gateway(running)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium, for one module at a time: playwright's sync API keeps an asyncio loop marked
    running in this thread while it is open, which later tests using asyncio must not see."""
    if not CHROMIUM.exists():
        pytest.fail(f"no Chromium at {CHROMIUM}: scripts/setup --test installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield launched
        finally:
            launched.close()


@pytest.fixture
def new_page(browser: Any, demo_gateway: Gateway) -> Iterator[Any]:
    """Open pages, each in its own browser context (so its own user); all closed afterwards.

    ``new_page("/")`` returns a Playwright page at that path of the demo gateway (or of the
    gateway given as ``on``); uncaught exceptions and console errors from the page's own code are
    collected in ``page.errors`` (the browser's reports of failed requests are not: some tests
    provoke those on purpose).
    """
    contexts: list[Any] = []

    def open_page(path: str = "/", on: Gateway | None = None) -> Any:
        context = browser.new_context(viewport={"width": 1280, "height": 900})
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        page.on("console", lambda msg: _console_error(page, msg))
        page.goto((on or demo_gateway).url + path)
        return page

    yield open_page
    for context in contexts:
        context.close()
