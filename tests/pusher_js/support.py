"""Drives clients nobody here wrote: pusher-js and laravel-echo in Node (``node/drive.mjs``), and
the example app's auth endpoints (``examples/pusher/app.py``, Pusher's own Python library)."""

from __future__ import annotations

import json
import queue
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from examples.pusher.app import create_app
from werkzeug.serving import make_server

NODE_DIR = Path(__file__).parent / "node"
WAIT = 20.0
"""Seconds to wait for a report: a new Kafka channel's first message takes a few seconds."""

APP_ID, APP_KEY, APP_SECRET = "4242", "tidings-app-key", "a-secret-of-the-pusher-app-0123456789"
PUSHER_ENV = {"PUSHER_APP_ID": APP_ID, "PUSHER_APP_KEY": APP_KEY, "PUSHER_APP_SECRET": APP_SECRET}

Report = dict[str, Any]


class NodeClient:
    """One Node process running pusher-js (or Echo): ``send`` commands, ``expect`` reports."""

    def __init__(self, gateway_url: str, auth_url: str | None = None) -> None:
        node = shutil.which("node")
        if node is None:
            pytest.fail("no node on PATH: the Pusher tests need Node.js 18+")
        if not (NODE_DIR / "node_modules" / "pusher-js").exists():
            pytest.fail("no tests/pusher_js/node/node_modules: run scripts/setup --test (npm ci)")
        parts = urlsplit(gateway_url)
        self.host, self.port = parts.hostname, parts.port
        self.auth_url = auth_url
        self.process = subprocess.Popen(
            [node, str(NODE_DIR / "drive.mjs")],
            cwd=NODE_DIR,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.reports: queue.Queue[Report] = queue.Queue()
        self.seen: list[Report] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.expect(lambda r: r["type"] == "ready")

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            try:
                self.reports.put(json.loads(line))
            except ValueError:
                self.reports.put({"type": "output", "line": line.rstrip()})

    def send(self, command: str, **fields: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps({"do": command, **fields}) + "\n")
        self.process.stdin.flush()

    def _connection(self, user: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {"key": APP_KEY, "host": self.host, "port": self.port}
        if self.auth_url is not None:
            fields["authEndpoint"] = f"{self.auth_url}/pusher/auth"
            fields["userAuthEndpoint"] = f"{self.auth_url}/pusher/user-auth"
        if user is not None:
            fields["params"] = {"user": user}
        return fields

    def connect(self, user: str | None = None) -> None:
        self.send("connect", **self._connection(user))
        connected = self.expect(lambda r: r["type"] == "state" and r["current"] == "connected")
        self.socket_id: str = connected["socket_id"]
        """pusher-js's ``connection.socket_id``, as its app's back end would be told it."""

    def echo(self, user: str | None = None) -> None:
        self.send("echo", **self._connection(user))
        self.expect(lambda r: r["type"] == "state" and r["current"] == "connected")

    def subscribe(self, channel: str, events: tuple[str, ...] = ()) -> Report:
        """Subscribe; ``events`` are also bound by name (reports of type ``bound``, with the
        sender's ``user_id``)."""
        self.send("subscribe", channel=channel, events=list(events))
        return self.expect_event(channel, "pusher:subscription_succeeded")

    def expect(self, match: Callable[[Report], bool], timeout: float = WAIT) -> Report:
        """The first report (unseen before) that matches, waiting at most ``timeout``."""
        for report in self.seen:
            if match(report):
                self.seen.remove(report)
                return report
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no matching report in {timeout}s; saw {self.seen[-20:]}")
            try:
                report = self.reports.get(timeout=left)
            except queue.Empty:
                continue
            if match(report):
                return report
            self.seen.append(report)

    def expect_event(self, channel: str, event: str, timeout: float = WAIT) -> Report:
        return self.expect(
            lambda r: r["type"] == "event" and r["channel"] == channel and r["event"] == event,
            timeout,
        )

    def close(self) -> None:
        if self.process.poll() is None:
            self.send("exit")
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@contextmanager
def node_clients(
    gateway_url: str, auth_url: str | None = None
) -> Iterator[Callable[[], NodeClient]]:
    """A factory of Node clients, every one stopped at the end."""
    made: list[NodeClient] = []

    def make() -> NodeClient:
        client = NodeClient(gateway_url, auth_url)
        made.append(client)
        return client

    try:
        yield make
    finally:
        for client in made:
            client.close()


@contextmanager
def auth_server() -> Iterator[str]:
    """The example app (examples/pusher/app.py) on a free port, in a thread: its URL."""
    import os

    saved = {name: os.environ.get(name) for name in PUSHER_ENV}
    os.environ.update(PUSHER_ENV)
    try:
        app = create_app()
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
    server = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        thread.join(10)
