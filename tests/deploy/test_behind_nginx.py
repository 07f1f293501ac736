"""The deployment of docs/deploy.md, run for real: the shipped nginx site, TLS with a
self-signed certificate, in front of two ``tidings serve`` gateways on Kafka.

A ``tidings.client`` connects over ``wss://`` through nginx, subscribes and receives; the gateway
it landed on is killed (SIGKILL: no goodbye) or stopped (SIGTERM, a rolling restart); messages
published meanwhile through nginx arrive once and in order after the client reconnected, through
nginx, to the other gateway. Event
streams come through unbuffered, and ``/metrics`` is refused to addresses outside the site's
allowed networks.
"""

from __future__ import annotations

import json
import secrets
import ssl
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest
import trio

import tidings.client
from tests.cluster.conftest import Cluster, Node
from tests.conftest import API_KEY, SECRET
from tests.support.nginx import Nginx
from tests.support.processes import Gateway
from tidings.adapters.jwt_tokens import JwtTokens

pytestmark = pytest.mark.kafka

WAIT = 30.0
"""Seconds for any one condition (a new channel's first message on Kafka takes a few)."""

OUTSIDE = "127.0.0.2"
"""A loopback address of this host that the site's /metrics allow-list does not name."""


@attrs.define
class Front:
    """nginx in front of gateway nodes, and a TLS context that trusts its certificate."""

    nginx: Nginx
    nodes: list[Node]
    cluster: Cluster
    tls: ssl.SSLContext

    def node(self, node_id: str | None) -> Node:
        [node] = [node for node in self.nodes if node.id == node_id]
        return node

    def http(self, *, local_address: str | None = None) -> httpx.AsyncClient:
        transport = httpx.AsyncHTTPTransport(verify=self.tls, local_address=local_address)
        return httpx.AsyncClient(base_url=self.nginx.url, transport=transport, timeout=WAIT)

    async def publish(self, channel: str, seqs: range) -> None:
        """``POST /broadcast`` through nginx; the answer must be 200."""
        body = [{"channel": channel, "event": "note", "data": {"seq": seq}} for seq in seqs]
        async with self.http() as http:
            response = await http.post(
                "/broadcast", json=body, headers={"authorization": f"Bearer {API_KEY}"}
            )
        assert response.status_code == 200, f"{response.status_code} {response.text}"


@contextmanager
def _front(
    bootstrap: str, directory: Path, names: Sequence[str], **settings: str
) -> Iterator[Front]:
    """Gateways ``names`` on Kafka behind the shipped site; everything stopped at the end
    (every gateway still running must exit 0 on SIGTERM)."""
    cluster = Cluster(bootstrap)
    nginx: Nginx | None = None
    try:
        for name in names:
            node_id = f"{name}-{cluster.run}"
            env = cluster.env(node_id, **settings)
            cluster.nodes.append(Node(node_id, env, Gateway(env)))
        nginx = Nginx(directory / "nginx", [node.port for node in cluster.nodes])
        nginx.start()
        tls = ssl.create_default_context(cafile=str(nginx.certificate))
        yield Front(nginx, list(cluster.nodes), cluster, tls)
    finally:
        if nginx is not None:
            nginx.stop()
        cluster.shutdown()


@pytest.fixture
def front(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Front]:
    """Two gateways behind nginx."""
    with _front(kafka_bootstrap, tmp_path, ["a", "b"]) as started:
        yield started


def _token(user: str) -> str:
    return JwtTokens(SECRET).issue(user, ttl=600)


async def _take(subscription: tidings.client.Subscription, count: int) -> list[int]:
    seqs: list[int] = []
    with trio.fail_after(WAIT):
        async for event in subscription:
            seqs.append(event.data["seq"])
            if len(seqs) == count:
                return seqs
    raise AssertionError(f"the subscription ended after {seqs}")


@pytest.mark.parametrize("end", ["killed", "stopped"])
async def test_a_wss_client_survives_its_gateway_going_away_behind_nginx(
    front: Front, end: str
) -> None:
    """Killed: SIGKILL, no goodbye. Stopped: SIGTERM, as in a rolling restart (close 1001,
    exit 0). Either way the client comes back through nginx on the other gateway."""
    channel = f"chat.n{secrets.token_hex(3)}"
    url = front.nginx.url.replace("https://", "wss://") + "/ws"
    async with tidings.client.connect(
        url, token=_token("ada"), ssl_context=front.tls, min_delay=0.1, max_delay=0.5
    ) as client:
        with trio.fail_after(WAIT):
            await client.wait_connected()
        first = front.node(client.node)
        orders = await client.subscribe(channel)
        await front.publish(channel, range(5))
        assert await _take(orders, 5) == [0, 1, 2, 3, 4]

        if end == "killed":
            first.process.kill()
        else:
            code = await trio.to_thread.run_sync(first.process.stop)
            assert code == 0, first.process.output()
        await front.publish(channel, range(5, 10))  # nginx passes it to the other gateway
        after = await _take(orders, 5)
        # A sentinel: anything sent twice would arrive before it.
        await front.publish(channel, range(10, 11))
        after += await _take(orders, 1)
        assert after == list(range(5, 11))
        assert client.node is not None and client.node != first.id
        assert front.node(client.node).running


@asynccontextmanager
async def _event_stream(front: Front, channel: str) -> AsyncIterator[AsyncIterator[str]]:
    async with (
        front.http() as http,
        http.stream("GET", "/sse", params={"channels": channel}) as response,
    ):
        assert response.status_code == 200, await response.aread()
        assert response.headers["content-type"].startswith("text/event-stream")
        yield response.aiter_lines()


async def _next_data(lines: AsyncIterator[str], wanted: str) -> dict[str, Any]:
    """The next event whose frame's type is ``wanted``."""
    with trio.fail_after(WAIT):
        async for line in lines:
            if line.startswith("data:"):
                frame: dict[str, Any] = json.loads(line.removeprefix("data:"))
                if frame.get("type") == wanted:
                    return frame
    raise AssertionError(f"the stream ended before a {wanted!r} event")


async def test_an_event_stream_comes_through_nginx_as_it_happens(front: Front) -> None:
    channel = f"public.n{secrets.token_hex(3)}"
    async with _event_stream(front, channel) as lines:
        await _next_data(lines, "subscribed")
        await front.publish(channel, range(1))
        # The stream is still open: nginx passed the event on without waiting for the end.
        event = await _next_data(lines, "event")
        assert event["channel"] == channel and event["data"] == {"seq": 0}


async def test_metrics_are_refused_outside_the_allowed_networks(front: Front) -> None:
    async with front.http() as inside:
        allowed = await inside.get("/metrics")
    assert allowed.status_code == 200 and "# TYPE" in allowed.text
    async with front.http(local_address=OUTSIDE) as outside:
        refused = await outside.get("/metrics")
        health = await outside.get("/healthz")
    assert refused.status_code == 403
    assert health.status_code == 200


async def _upgrade_from(front: Front, local_address: str) -> tuple[int, trio.SSLStream[Any]]:
    """A WebSocket handshake through nginx from ``local_address``: the status, and the stream
    (held open by the caller while it counts)."""
    tcp = await trio.open_tcp_stream(
        "127.0.0.1", front.nginx.https_port, local_address=local_address
    )
    stream = trio.SSLStream(tcp, front.tls, server_hostname="localhost")
    await stream.send_all(
        b"GET /ws HTTP/1.1\r\nhost: localhost\r\nupgrade: websocket\r\nconnection: Upgrade\r\n"
        b"sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n"
        b"x-forwarded-for: 192.0.2.1\r\n\r\n"  # what a client claims: never believed
    )
    head = b""
    with trio.fail_after(WAIT):
        while b"\r\n\r\n" not in head:
            chunk = await stream.receive_some(4096)
            assert chunk, f"nginx closed the connection after {head!r}"
            head += chunk
    return int(head.split(b" ", 2)[1]), stream


async def test_behind_a_trusted_proxy_the_per_address_limit_counts_each_client(
    kafka_bootstrap: str, tmp_path: Path
) -> None:
    """With nginx listed in REALTIME_TRUSTED_PROXIES, clients at two addresses each get their
    one connection, and the second of one of them is refused: not every user as the proxy
    (without the setting, the second client is refused: checked by hand, (101, 429, 429))."""
    settings = {"REALTIME_TRUSTED_PROXIES": "127.0.0.1", "REALTIME_MAX_CONNECTIONS_PER_IP": "1"}
    with _front(kafka_bootstrap, tmp_path, ["solo"], **settings) as solo:
        first, ada = await _upgrade_from(solo, "127.0.0.2")
        second, bob = await _upgrade_from(solo, "127.0.0.3")
        third, again = await _upgrade_from(solo, "127.0.0.2")
        for stream in (ada, bob, again):
            await trio.aclose_forcefully(stream)
        assert (first, second, third) == (101, 101, 429)
