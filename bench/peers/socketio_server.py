"""The python-socketio peer server, as its documentation sets it up.

Three modes, one process each:

* in-process, the default: ``socketio.Server(async_mode="gevent")`` on gevent's WSGI server with
  gevent-websocket, python-socketio's fastest server for fan-out in one process (its emit
  encodes a packet once per room and queues it to each client's writer greenlet; the asyncio
  server spends a task per recipient per message). ``POST /emit`` takes a JSON list of
  ``{"room": R, "data": D}`` (up to 100) and emits each as event ``bench`` to its room; this is
  the in-process publisher, like tidings' ``POST /broadcast`` on the memory broker, served by the
  same WSGI server (a greenlet per request, as every other request).
* ``--asyncio``: ``socketio.AsyncServer`` on aiohttp with the same ``POST /emit``: the asyncio
  way to run python-socketio, shown as a second row.
* ``--kafka``: python-socketio's Kafka support is ``socketio.KafkaManager``, a manager for the
  synchronous ``socketio.Server`` only (there is no asyncio Kafka manager): the gevent server
  again, with the manager. Publishers are other processes that emit through
  ``socketio.KafkaManager(..., write_only=True)`` on the same topic (``--channel``).

Clients connect to ``/socket.io/`` and send ``join`` with a room name (acknowledged). The server
prints ``listening PORT`` on stdout once it accepts connections.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

PING_TIMEOUT = 60
"""Seconds Engine.IO waits for a client's pong (default 20). The harness pauses servers (SIGSTOP)
for a backlog measurement; a paused server must not count its own pause against its clients.
tidings has no server-side heartbeat to protect (its clients ping)."""


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--kafka", metavar="URL", help="kafka://HOST:PORT: use KafkaManager")
    mode.add_argument("--asyncio", action="store_true", help="AsyncServer on aiohttp")
    parser.add_argument("--channel", default="socketio", help="KafkaManager channel (topic)")
    return parser.parse_args(argv)


def run_asyncio(args: argparse.Namespace) -> None:
    import socketio
    from aiohttp import web

    sio = socketio.AsyncServer(
        async_mode="aiohttp", ping_timeout=PING_TIMEOUT, logger=False, engineio_logger=False
    )
    app = web.Application()
    sio.attach(app)

    @sio.event  # type: ignore[untyped-decorator,unused-ignore]
    async def join(sid: str, room: str) -> bool:
        await sio.enter_room(sid, room)
        return True

    async def emit(request: web.Request) -> web.Response:
        items: list[dict[str, Any]] = await request.json()
        for item in items:
            await sio.emit("bench", item["data"], room=item["room"])
        return web.json_response({"emitted": len(items)})

    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def started(app: web.Application) -> None:
        print(f"listening {args.port}", flush=True)

    app.router.add_post("/emit", emit)
    app.router.add_get("/healthz", health)
    app.on_startup.append(started)
    web.run_app(app, host=args.host, port=args.port, print=None, access_log=None)


def run_gevent(args: argparse.Namespace) -> None:
    from gevent import monkey

    # As python-socketio's gevent deployment docs do; KafkaManager's listener also blocks on
    # kafka-python sockets, which must yield to gevent.
    monkey.patch_all()

    import json
    import socket

    import socketio
    from gevent import pywsgi
    from geventwebsocket.handler import WebSocketHandler

    manager = socketio.KafkaManager(args.kafka, channel=args.channel) if args.kafka else None
    sio = socketio.Server(
        async_mode="gevent", client_manager=manager, ping_timeout=PING_TIMEOUT, logger=False,
        engineio_logger=False,
    )

    @sio.event  # type: ignore[untyped-decorator,unused-ignore]
    def join(sid: str, room: str) -> bool:
        sio.enter_room(sid, room)
        return True

    def other(environ: dict[str, Any], start_response: Any) -> list[bytes]:
        """``/healthz``, and ``POST /emit`` in the in-process mode."""
        if environ.get("PATH_INFO") == "/emit" and manager is None:
            if environ.get("REQUEST_METHOD") != "POST":
                start_response("405 Method Not Allowed", [("content-type", "text/plain")])
                return [b"POST a JSON list of {room, data}\n"]
            length = int(environ.get("CONTENT_LENGTH") or 0)
            items: list[dict[str, Any]] = json.loads(environ["wsgi.input"].read(length))
            for item in items:
                sio.emit("bench", item["data"], room=item["room"])
            start_response("200 OK", [("content-type", "application/json")])
            return [json.dumps({"emitted": len(items)}).encode()]
        start_response("200 OK", [("content-type", "application/json")])
        return [b'{"status":"ok"}']

    class NoDelayHandler(WebSocketHandler):  # type: ignore[misc,unused-ignore]
        """gevent's WSGI handler writes a response's headers and its body in two sends: with
        Nagle's algorithm on, the body waits for the client's delayed ACK (40 ms a ``POST
        /emit``, which capped the publisher at ~25 requests/s). TCP_NODELAY, as aiohttp and
        trio (tidings) set on every connection."""

        def handle(self) -> None:
            self.socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            super().handle()

    app = socketio.WSGIApp(sio, other)
    # gevent-websocket's handler, as python-socketio's gevent deployment docs show; without it
    # engine.io falls back to simple-websocket, which opens an epoll descriptor per connection.
    server = pywsgi.WSGIServer(
        (args.host, args.port), app, handler_class=NoDelayHandler, log=None, error_log=None,
    )
    server.start()
    print(f"listening {args.port}", flush=True)
    server.serve_forever()


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    try:
        if args.asyncio:
            run_asyncio(args)
        else:
            run_gevent(args)
    except KeyboardInterrupt:
        sys.exit(0)


if __name__ == "__main__":
    main()
