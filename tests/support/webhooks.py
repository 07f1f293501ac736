"""A webhook receiver for tests: a real HTTP server on 127.0.0.1 that keeps what it is sent."""

from __future__ import annotations

import http.server
import threading
import time
from collections.abc import Callable

import attrs


@attrs.frozen
class Received:
    headers: dict[str, str]
    """Header names in lower case."""
    body: bytes


class WebhookReceiver:
    """Answers every ``POST`` with ``status`` (200 unless a test changes it) and keeps each
    request it answered with 2xx in ``received``."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.refused = 0
        self.status = 200
        self._changed = threading.Condition()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = self.rfile.read(length)
                status = receiver.status
                self.send_response(status)
                self.send_header("content-length", "0")
                self.end_headers()
                with receiver._changed:
                    if 200 <= status < 300:
                        headers = {k.lower(): v for k, v in self.headers.items()}
                        receiver.received.append(Received(headers, body))
                    else:
                        receiver.refused += 1
                    receiver._changed.notify_all()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/webhooks"

    def wait_for(self, condition: Callable[[], bool], timeout: float = 20) -> None:
        """Block until ``condition()`` holds (checked after each request), or fail."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not condition():
                left = deadline - time.monotonic()
                if left <= 0:
                    raise AssertionError(f"webhooks received: {self.received!r}")
                self._changed.wait(left)

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
