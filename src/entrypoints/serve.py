"""``tidings serve``: run the gateway until SIGTERM or Ctrl+C, then shut down in order.

Shutdown: stop taking connections, close every client with 1001 "going away" (they reconnect
elsewhere and resume), let the broker feed finish and commit the batch in hand, exit 0.
"""

from __future__ import annotations

import functools
import logging
import os
import signal
import socket
import sys

import trio

from ..application.demo import run_demo_feed
from ..bootstrap import Container
from .runtime import tune_interpreter

log = logging.getLogger("tidings.serve")

DRAIN_TIMEOUT = 10.0


async def run_gateway(
    container: Container,
    *,
    supervisor_fd: int | None = None,
    demo_feed: bool = True,
    task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve until a signal, then stop in order (see the module doc).

    ``supervisor_fd``: this gateway is a worker of ``tidings serve --workers`` (``workers.py``),
    which announced the URLs itself. The descriptor is this worker's end of a socket pair with
    the supervisor: ``ready`` is sent on it once listening, and its end of file (the supervisor
    gone, even killed with SIGKILL) stops the worker as a signal would, so that no worker
    outlives its supervisor and keeps the port. ``demo_feed``: in demo mode, publish the demo
    page's feed (False in every worker but the first: one feed per gateway, not per process).
    """
    settings = container.settings()
    gateway = container.gateway()
    server = container.web_server()
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with trio.open_nursery() as nursery:
            feed_done = trio.Event()
            stop = trio.Event()

            async def pump(
                *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
            ) -> None:
                try:
                    await gateway.run(task_status=task_status)
                finally:
                    feed_done.set()

            async def until_signal() -> None:
                async for signum in signals:
                    log.info("received %s: shutting down", signal.Signals(signum).name)
                    break
                stop.set()

            await nursery.start(pump)
            await nursery.start(
                functools.partial(
                    server.serve,
                    gateway.handle,
                    streams=gateway.handle_stream,
                    pusher=gateway.handle_pusher,
                )
            )
            if settings.realtime_demo and demo_feed:
                nursery.start_soon(run_demo_feed, container.realtime())
            if supervisor_fd is None:
                announce(
                    server.url,
                    gateway.node,
                    settings.realtime_broker,
                    settings.realtime_demo,
                    http_publishing=settings.api_key() is not None,
                )
            else:
                pid = os.getpid()
                log.info("worker %s listening on %s (pid %d)", gateway.node, server.url, pid)
                nursery.start_soon(_while_supervised, supervisor_fd, stop)
            tune_interpreter(nursery)
            task_status.started(server.url)
            nursery.start_soon(until_signal)
            await stop.wait()
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


async def _while_supervised(fd: int, stop: trio.Event) -> None:
    """Tell the supervisor this worker listens, then ``stop`` when it is gone."""
    sock = trio.socket.from_stdlib_socket(socket.socket(fileno=fd))
    async with trio.SocketStream(sock) as supervisor:
        try:
            await supervisor.send_all(b"ready\n")
            while await supervisor.receive_some(64):
                pass
        except trio.BrokenResourceError:
            pass
    log.warning("the supervisor is gone: shutting down")
    stop.set()


def announce(
    url: str, node: str, broker: str, demo: bool, *, http_publishing: bool, workers: int = 1
) -> None:
    ws = url.replace("http://", "ws://", 1)
    off = "" if http_publishing else " (off: start with REALTIME_API_KEY to publish over HTTP)"
    where = f"on node {node}" if workers == 1 else f"of {workers} workers, nodes {node}"
    lines = [
        f"tidings gateway {where}, broker {broker}{' (demo mode)' if demo else ''}",
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
