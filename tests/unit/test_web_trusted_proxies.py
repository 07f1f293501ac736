"""``REALTIME_TRUSTED_PROXIES``: behind a proxy, the per-address limit counts the proxy's
clients, each by the address the proxy names; a header from anyone else changes nothing.

In process, over real sockets: the test plays the proxy (its connections come from 127.0.0.1)
and writes ``X-Forwarded-For`` as nginx's ``$proxy_add_x_forwarded_for`` would.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import trio
import trio.testing

from tidings.adapters.web import WebServer
from tidings.domain.proxies import TrustedProxies
from tidings.ports import ClientConnection

from .test_web_limits import Counts, EchoApi, _read_all, _status


def _upgrade(forwarded_for: tuple[str, ...]) -> bytes:
    lines = "".join(f"x-forwarded-for: {value}\r\n" for value in forwarded_for)
    return (
        "GET /ws HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        f"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n{lines}\r\n"
    ).encode()


class Gateway:
    """A listener whose WebSocket handler notes each connection's remote and holds it."""

    def __init__(self, trusted: str, per_address: int = 1) -> None:
        self.counts = Counts()
        self.remotes: list[str] = []
        self.server = WebServer(
            "127.0.0.1",
            0,
            EchoApi(),
            metrics=self.counts,  # type: ignore[arg-type]
            max_connections_per_address=per_address,
            trusted_proxies=TrustedProxies.parse(trusted),
        )

    async def hold(self, connection: ClientConnection) -> None:
        self.remotes.append(connection.remote)
        while True:
            await connection.receive()

    @asynccontextmanager
    async def upgraded(self, *forwarded_for: str) -> AsyncIterator[trio.SocketStream]:
        """A connection that became a WebSocket (101), held open for the block."""
        stream = await trio.open_tcp_stream("127.0.0.1", self.server.port)
        async with stream:
            await stream.send_all(_upgrade(forwarded_for))
            head = b""
            with trio.fail_after(10):
                while b"\r\n\r\n" not in head:
                    head += await stream.receive_some(4096)
            assert _status(head) == 101, head
            yield stream

    async def refused(self, *forwarded_for: str) -> bytes:
        stream = await trio.open_tcp_stream("127.0.0.1", self.server.port)
        async with stream:
            await stream.send_all(_upgrade(forwarded_for))
            return await _read_all(stream)


@asynccontextmanager
async def serving(gateway: Gateway) -> AsyncIterator[Gateway]:
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.server.serve, gateway.hold)
        yield gateway
        nursery.cancel_scope.cancel()


async def test_a_trusted_proxy_s_clients_are_counted_each_under_its_own_address() -> None:
    async with (
        serving(Gateway("127.0.0.1")) as gateway,
        gateway.upgraded("203.0.113.1"),
        gateway.upgraded("203.0.113.2"),
    ):
        answer = await gateway.refused("203.0.113.1")
        assert _status(answer) == 429, answer
        assert b"203.0.113.1 has 1 connections open, the limit" in answer
        assert gateway.counts.refused == ["max_connections_per_address"]
        assert [remote.split(" via ")[0] for remote in gateway.remotes] == [
            "203.0.113.1",
            "203.0.113.2",
        ]
        assert all(remote.startswith("203.0.113.") for remote in gateway.remotes)
        assert all(" via 127.0.0.1:" in remote for remote in gateway.remotes)


async def test_what_a_client_wrote_before_the_proxy_s_entry_is_not_believed() -> None:
    """nginx appends the address that connected to it: the client's own entries lie left."""
    async with serving(Gateway("127.0.0.1")) as gateway, gateway.upgraded("10.9.9.9, 198.51.100.7"):
        answer = await gateway.refused("10.1.1.1, 198.51.100.7")
        assert _status(answer) == 429 and b"198.51.100.7 has 1" in answer
        # Entries split over several header lines read as one list, in order.
        answer = await gateway.refused("10.2.2.2", "198.51.100.7")
        assert _status(answer) == 429 and b"198.51.100.7 has 1" in answer


async def test_the_header_from_an_untrusted_peer_changes_nothing() -> None:
    async with serving(Gateway("10.0.0.0/8")) as gateway, gateway.upgraded("203.0.113.1"):
        answer = await gateway.refused("203.0.113.2")
        assert _status(answer) == 429, answer
        assert b"127.0.0.1 has 1 connections open, the limit" in answer
        assert gateway.remotes[0].startswith("127.0.0.1:") and "via" not in gateway.remotes[0]


async def test_a_trusted_proxy_that_names_no_client_is_counted_itself() -> None:
    async with serving(Gateway("127.0.0.1")) as gateway, gateway.upgraded():
        answer = await gateway.refused("not-an-address")
        assert _status(answer) == 429 and b"127.0.0.1 has 1" in answer


async def test_a_forwarded_client_s_place_is_freed_when_it_leaves() -> None:
    async with serving(Gateway("127.0.0.1")) as gateway:
        async with gateway.upgraded("203.0.113.1"):
            pass
        await trio.testing.wait_all_tasks_blocked()  # the server has seen it go
        assert gateway.server.open_connections == 0
        async with gateway.upgraded("203.0.113.1"):
            assert gateway.server.open_connections == 1
