"""``tidings serve``: run the gateway until SIGTERM or Ctrl+C, then shut down in order.

Shutdown: stop taking connections, close every client with 1001 "going away" (they reconnect
elsewhere and resume), let the broker feed finish and commit the batch in hand, exit 0.
"""

from __future__ import annotations

import functools
import logging
import signal
import sys

import trio

from ..application.demo import run_demo_feed
from ..bootstrap import Container
from .runtime import tune_interpreter

log = logging.getLogger("tidings.serve")

DRAIN_TIMEOUT = 10.0


async def run_gateway(
    container: Container, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED
) -> None:
    """Serve until a signal, then stop in order (see the module doc)."""
    settings = container.settings()
    gateway = container.gateway()
    server = container.web_server()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            feed_done = trio.Event()

            async def pump(
                *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
            ) -> None:
                try:
                    await gateway.run(task_status=task_status)
                finally:
                    feed_done.set()

            await nursery.start(pump)
            await nursery.start(
                functools.partial(
                    server.serve,
                    gateway.handle,
                    streams=gateway.handle_stream,
                    pusher=gateway.handle_pusher,
                )
            )
            if settings.realtime_demo:
                nursery.start_soon(run_demo_feed, container.realtime())
            _announce(
                server.url,
                gateway.node,
                settings.realtime_broker,
                settings.realtime_demo,
                http_publishing=settings.api_key() is not None,
            )
            tune_interpreter(nursery)
            task_status.started(server.url)
            async for signum in signals:
                log.info("received %s: shutting down", signal.Signals(signum).name)
                break
            server.stop_accepting()
            gateway.stop()
            with trio.move_on_after(DRAIN_TIMEOUT):
                await gateway.wait_drained()
                await feed_done.wait()
            if not feed_done.is_set() or gateway.hub.connection_count:
                log.warning(
                    "shutdown not clean within %gs: %d connections open, feed %s",
                    DRAIN_TIMEOUT,
                    gateway.hub.connection_count,
                    "done" if feed_done.is_set() else "still running",
                )
            nursery.cancel_scope.cancel()
    log.info("gateway stopped")


def _announce(url: str, node: str, broker: str, demo: bool, *, http_publishing: bool) -> None:
    ws = url.replace("http://", "ws://", 1)
    off = "" if http_publishing else " (off: start with REALTIME_API_KEY to publish over HTTP)"
    lines = [
        f"tidings gateway on node {node}, broker {broker}{' (demo mode)' if demo else ''}",
        f"  demo page   {url}/",
        f"  client      {url}/client.js",
        f"  websocket   {ws}/ws",
        f"  events      {url}/sse?channels=...",
        f"  pusher      {ws}/app/{{key}}?protocol=7",
        f"  broadcast   POST {url}/broadcast{off}",
        f"  health      {url}/healthz",
        f"  metrics     {url}/metrics",
        "Ctrl+C to stop.",
    ]
    print("\n".join(lines), flush=True)
    sys.stdout.flush()
