"""The gateway's listener: HTTP and WebSocket on one port, each connection its own error boundary.

Each TCP connection is read as HTTP/1.1 (``http1``) until a request upgrades to WebSocket at
``/ws``; the connection then becomes a ``WebSocketConnection`` (``websocket``) handed to the
gateway until it ends. What happens on one connection stays there: every stage (the request
head, the body, the upgrade, the open connection, the close) is bounded in time, every error is
caught at the connection's edge (logged once, counted, the connection closed with 1011), and the
listener never sees it. Limits on open connections, in total and per client address, are checked
before a byte is read; for a connection from a trusted reverse proxy (``REALTIME_TRUSTED_PROXIES``)
the client's address is the one the proxy names in ``X-Forwarded-For``, so that one is counted
once each request head is read (``domain.proxies``; ADR 0033). See ADR 0007 and ADR 0017.
"""

from __future__ import annotations

import functools
import logging
from collections import Counter
from collections.abc import Callable

import h11
import trio

from ...domain.disconnects import close_reason
from ...domain.protocol import CloseCode
from ...domain.proxies import TrustedProxies
from ...ports import (
    ConnectionHandler,
    GatewayMetrics,
    HttpApi,
    HttpRequest,
    HttpResponse,
    RoutedHandler,
    StreamHandler,
)
from .http1 import BadRequest, HttpConnection, RequestHead, error_response, linger
from .sse import EventStreamConnection
from .websocket import WebSocketConnection, accept_headers

log = logging.getLogger("tidings.web")

WEBSOCKET_PATH = "/ws"
PUSHER_PREFIX = "/app/"
"""Pusher's WebSocket endpoint, ``/app/{key}`` (ADR 0035): served only with a Pusher handler."""
STREAM_PATH = "/sse"

Admission = Callable[[HttpRequest], HttpResponse | None]
"""Decides whether an upgrade request may become a WebSocket: None, or the refusal to send."""


class _Refused(Exception):
    """The connection was turned away before it was served (``reason`` is a metrics label)."""

    def __init__(self, response: HttpResponse, reason: str) -> None:
        self.response = response
        self.reason = reason
        super().__init__(reason)


class _Peer:
    """Who one connection is from: the address the per-address limit counts it under (for a
    trusted proxy's connection, the client it names, once a request head said so) and the
    words logs use for it."""

    __slots__ = ("address", "counted", "proxied", "remote")

    def __init__(self, address: str, remote: str, *, proxied: bool) -> None:
        self.address = address
        """The socket's peer address (the proxy's, for a proxied connection)."""
        self.remote = remote
        self.proxied = proxied
        self.counted: str | None = None


class WebServer:
    """The gateway's listener (implements ``Transport``); see the module doc."""

    def __init__(
        self,
        host: str,
        port: int,
        http: HttpApi,
        *,
        metrics: GatewayMetrics | None = None,
        admit: Admission | None = None,
        max_frame_bytes: int = 65_536,
        max_body_bytes: int = 1_048_576,
        handshake_timeout: float = 10.0,
        keep_alive_timeout: float = 30.0,
        max_connections: int = 0,
        max_connections_per_address: int = 0,
        trusted_proxies: TrustedProxies | None = None,
        reuse_port: bool = False,
    ) -> None:
        self.host = host
        self.port = port
        self._http = http
        self._metrics = metrics
        self._admit = admit
        self._max_message = max_frame_bytes * 4
        self._max_body = max_body_bytes
        self._handshake_timeout = handshake_timeout
        self._keep_alive_timeout = keep_alive_timeout
        self._max_connections = max_connections
        self._max_per_address = max_connections_per_address
        self._reuse_port = reuse_port
        self._open = 0
        self._per_address: Counter[str] = Counter()
        self._trusted = trusted_proxies or TrustedProxies()
        self._accepting = trio.CancelScope()
        self._streams: StreamHandler | None = None
        self._pusher: RoutedHandler | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def trusted_proxies(self) -> TrustedProxies:
        """The proxies whose ``X-Forwarded-For`` names the client (none: never read)."""
        return self._trusted

    @property
    def open_connections(self) -> int:
        """TCP connections open now, HTTP and WebSocket alike."""
        return self._open

    async def serve(
        self,
        handler: ConnectionHandler,
        *,
        streams: StreamHandler | None = None,
        pusher: RoutedHandler | None = None,
        task_status: trio.TaskStatus[WebServer] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Serve until cancelled: WebSockets go to ``handler``, Server-Sent Events streams
        (``GET /sse``) to ``streams`` (without it, ``/sse`` is an ordinary path: 404), and
        WebSockets at ``/app/{key}`` to ``pusher`` (without it, 404)."""
        self._streams = streams
        self._pusher = pusher
        if self._reuse_port:
            listeners = [await _shared_listener(self.host, self.port)]
        else:
            listeners = await trio.open_tcp_listeners(self.port, host=self.host)
        self.port = listeners[0].socket.getsockname()[1]
        async with trio.open_nursery() as nursery:
            task_status.started(self)
            # A partial, not a closure: one coroutine frame less held by every connection.
            on_stream = functools.partial(self._on_stream, handler=handler)
            with self._accepting:
                await trio.serve_listeners(on_stream, listeners, handler_nursery=nursery)
            for listener in listeners:
                await listener.aclose()

    def stop_accepting(self) -> None:
        """Close the listening socket; connections already open go on until they end."""
        self._accepting.cancel()

    # -- One connection --------------------------------------------------------------------------

    async def _on_stream(self, stream: trio.SocketStream, handler: ConnectionHandler) -> None:
        """One TCP connection, from accept to close; nothing it does escapes this call."""
        try:
            address, remote = _peer(stream)
        except OSError:
            await trio.aclose_forcefully(stream)
            return
        peer = _Peer(address, remote, proxied=self._trusted.trusts(address))
        self._open += 1
        if not peer.proxied:  # a proxy's client is counted once its request names it
            self._count(peer, address)
        try:
            refusal = self._over_limit(peer)
            if refusal is not None:
                await self._turn_away(stream, refusal)
                return
            client = await self._accept(stream, peer)
            if isinstance(client, EventStreamConnection):
                await self._serve_stream(client)
            elif client is not None:
                await self._serve_websocket(client, handler)
        except Exception:
            # A bug on one connection must never take the listener (and every other client)
            # down with it: say so once, count it, and let this connection go.
            log.exception("connection from %s failed", peer.remote)
            if self._metrics is not None:
                self._metrics.connection_failed()
        finally:
            self._open -= 1
            self._uncount(peer)
            await trio.aclose_forcefully(stream)

    def _count(self, peer: _Peer, address: str) -> None:
        """Count ``peer``'s connection under ``address`` (and no longer under another)."""
        if peer.counted == address:
            return
        self._uncount(peer)
        self._per_address[address] += 1
        peer.counted = address

    def _uncount(self, peer: _Peer) -> None:
        if peer.counted is None:
            return
        self._per_address[peer.counted] -= 1
        if not self._per_address[peer.counted]:
            del self._per_address[peer.counted]
        peer.counted = None

    def _over_limit(self, peer: _Peer) -> _Refused | None:
        """Whether this connection is one too many; counted in ``_open`` (and under its
        address, when it is known) already."""
        if self._max_connections and self._open > self._max_connections:
            message = f"the gateway is at its limit of {self._max_connections} connections"
            refusal = error_response(503, message, {"retry-after": "5"})
            return _Refused(refusal, "max_connections")
        return self._over_address_limit(peer)

    def _over_address_limit(self, peer: _Peer) -> _Refused | None:
        address = peer.counted
        if (
            address is not None
            and self._max_per_address
            and self._per_address[address] > self._max_per_address
        ):
            message = f"{address} has {self._max_per_address} connections open, the limit"
            refusal = error_response(429, message, {"retry-after": "5"})
            return _Refused(refusal, "max_connections_per_address")
        return None

    def _identify(self, peer: _Peer, head: RequestHead) -> None:
        """A trusted proxy's request names its client: count the connection under the
        client's address (each request may name another: keep-alive to the proxy); raises
        ``_Refused`` when that address is over its limit."""
        client = self._trusted.client_address(peer.address, head.forwarded_for)
        self._count(peer, client)
        peer.remote = f"{client} via {_proxy_of(peer.remote)}"
        refusal = self._over_address_limit(peer)
        if refusal is not None:
            raise refusal

    async def _turn_away(self, stream: trio.SocketStream, refused: _Refused) -> None:
        """Answer a connection over a limit without reading its request, and close it."""
        if self._metrics is not None:
            self._metrics.connection_refused(refused.reason)
        connection = HttpConnection(stream, max_body_bytes=0)
        with trio.move_on_after(self._handshake_timeout):
            try:
                await connection.respond(refused.response)
                await linger(stream)
            except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
                pass

    async def _accept(
        self, stream: trio.SocketStream, peer: _Peer
    ) -> WebSocketConnection | EventStreamConnection | None:
        """Serve the connection's HTTP requests until one upgrades to WebSocket or asks for an
        event stream: the client, its handshake done; None when the connection ended first."""
        http = HttpConnection(stream, max_body_bytes=self._max_body)
        try:
            return await self._serve_http(http, stream, peer)
        except BadRequest as exc:
            if self._metrics is not None and exc.status < 500:
                self._metrics.connection_refused("bad_request")
            with trio.move_on_after(self._handshake_timeout):
                await http.refuse(exc.status, exc.message, exc.headers)
                await linger(stream)
        except _Refused as exc:
            if self._metrics is not None:
                self._metrics.connection_refused(exc.reason)
            with trio.move_on_after(self._handshake_timeout):
                await http.respond(exc.response)
                await linger(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as exc:
            log.debug("connection from %s ended: %s", peer.remote, exc)
        return None

    async def _serve_http(
        self, http: HttpConnection, stream: trio.SocketStream, peer: _Peer
    ) -> WebSocketConnection | EventStreamConnection | None:
        """Requests one after another (keep-alive) until one upgrades (its WebSocket is returned)
        or asks for an event stream (returned unanswered) or the connection closes (None).
        Reading a request and writing its answer are bounded in time; answering it is not (a
        broadcast may wait for the broker's acknowledgement)."""
        timeout = self._handshake_timeout
        while True:
            body = b""
            with trio.move_on_after(timeout) as reading:
                head = await http.next_head()
                if head is not None and not head.wants_websocket:
                    body = await http.read_body(head)
            if reading.cancelled_caught or head is None:
                return None  # closed, or too slow to send a request
            if peer.proxied:
                self._identify(peer, head)
            remote = peer.remote
            if head.wants_websocket:
                with trio.move_on_after(self._handshake_timeout):
                    return await self._upgrade(http, stream, head, remote)
                return None
            if self._streams is not None and head.path == STREAM_PATH and head.method == "GET":
                return self._event_stream(http, stream, head, remote)
            response = await self._answer(head, body, remote)
            with trio.move_on_after(self._handshake_timeout) as writing:
                more = await http.respond(response, head_only=head.method == "HEAD")
            if writing.cancelled_caught or not more:
                return None
            timeout = self._keep_alive_timeout

    async def _answer(self, head: RequestHead, body: bytes, remote: str) -> HttpResponse:
        try:
            return await self._http.handle(head.request(body))
        except Exception:
            log.exception("%s %s from %s failed", head.method, head.path, remote)
            raise BadRequest(500, "internal error") from None

    async def _upgrade(
        self, http: HttpConnection, stream: trio.SocketStream, head: RequestHead, remote: str
    ) -> WebSocketConnection:
        pusher = self._pusher is not None and head.path.startswith(PUSHER_PREFIX)
        if head.path != WEBSOCKET_PATH and not pusher:
            raise BadRequest(404, f"no WebSocket at {head.path}")
        headers = accept_headers(head.method, head.http_version, head.headers)
        if self._admit is not None:
            refusal = self._admit(head.request())
            if refusal is not None:
                raise _Refused(refusal, "origin")
        received = await http.switch_protocols(headers)
        return WebSocketConnection(
            stream,
            token=head.query.get("token"),
            remote=remote,
            max_message_bytes=self._max_message,
            received=received,
            path=head.path,
            query=head.query if pusher else None,
        )

    def _event_stream(
        self, http: HttpConnection, stream: trio.SocketStream, head: RequestHead, remote: str
    ) -> EventStreamConnection:
        """The stream a ``GET /sse`` asks for, once its origin is admitted (as an upgrade's);
        its token from ``?token=`` or ``Authorization: Bearer``, not both."""
        request = head.request()
        if self._admit is not None:
            refusal = self._admit(request)
            if refusal is not None:
                raise _Refused(refusal, "origin")
        query = dict(request.query)
        headers = dict(request.headers)
        token = query.pop("token", None)
        authorization = headers.pop("authorization", None)
        if authorization is not None:
            scheme, _, credentials = authorization.strip().partition(" ")
            if scheme.lower() != "bearer":
                raise BadRequest(400, "send the token as 'Authorization: Bearer <token>'")
            if token is not None:
                raise BadRequest(
                    400, "give the token once: ?token= or Authorization: Bearer, not both"
                )
            token = credentials.strip()
        cors = {"vary": "Origin"}
        origin = request.headers.get("origin")
        if origin is not None:  # admitted above: the origin is allowed
            cors["access-control-allow-origin"] = origin
        return EventStreamConnection(
            stream,
            http,
            HttpRequest(request.method, request.path, query, headers),
            token=token,
            remote=remote,
            cors=cors,
        )

    async def _serve_stream(self, client: EventStreamConnection) -> None:
        assert self._streams is not None
        try:
            await self._streams(client)
        except Exception:
            log.exception("stream of %s failed", client.remote)
            if self._metrics is not None:
                self._metrics.connection_failed()
        finally:
            with trio.CancelScope(shield=True):
                await client.finish("")

    async def _serve_websocket(
        self, client: WebSocketConnection, handler: ConnectionHandler
    ) -> None:
        try:
            if self._pusher is not None and client.path.startswith(PUSHER_PREFIX):
                await self._pusher(client)
            else:
                await handler(client)
        except Exception:
            log.exception("connection from %s failed", client.remote)
            if self._metrics is not None:
                self._metrics.connection_failed()
            with trio.CancelScope(shield=True):
                await client.close(CloseCode.INTERNAL_ERROR, close_reason(CloseCode.INTERNAL_ERROR))
        finally:
            with trio.CancelScope(shield=True):
                await client.close(1001)


def _proxy_of(remote: str) -> str:
    """The proxy's part of a log name (``203.0.113.9 via 127.0.0.1:4711`` -> the latter)."""
    return remote.rpartition(" via ")[2]


async def _shared_listener(host: str, port: int) -> trio.SocketListener:
    """A listener with ``SO_REUSEPORT``: several processes listen on one port and the kernel
    spreads new connections among them (``tidings serve --workers``, ADR 0032).

    ``trio.open_tcp_listeners`` does not set the option, so the socket is built here; one
    address only (the first ``host`` resolves to), as a worker is told one address.
    """
    infos = await trio.socket.getaddrinfo(
        host or None, port, type=trio.socket.SOCK_STREAM, flags=trio.socket.AI_PASSIVE
    )
    family, kind, proto, _, address = infos[0]
    sock = trio.socket.socket(family, kind, proto)
    try:
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEADDR, 1)
        sock.setsockopt(trio.socket.SOL_SOCKET, trio.socket.SO_REUSEPORT, 1)
        await sock.bind(address)
        sock.listen(0xFFFF)  # as trio's own listeners: the kernel caps it at its maximum
    except BaseException:
        sock.close()
        raise
    return trio.SocketListener(sock)


def _peer(stream: trio.SocketStream) -> tuple[str, str]:
    """The client's address alone (what limits count) and with its port (for logs)."""
    host, port = stream.socket.getpeername()[:2]
    return str(host), f"{host}:{port}"
