"""Who may open a WebSocket: the upgrade's Origin and Host, over real sockets to ``tidings serve``.

A page on any site can make a browser open a WebSocket to any address, and a DNS name can be
pointed at 127.0.0.1 (rebinding); the gateway refuses both before the upgrade, with a 403 that
says what to list, and counts the refusal.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import trio

from tests.conftest import API_KEY, SECRET
from tests.support.processes import Gateway, process_env

from .support import WAIT

APP = "https://app.example"


@pytest.fixture(scope="module")
def gateway() -> Iterator[Gateway]:
    process = Gateway(
        process_env(
            REALTIME_SECRET=SECRET,
            REALTIME_API_KEY=API_KEY,
            REALTIME_BROKER="memory",
            REALTIME_ALLOWED_ORIGINS=APP,
        )
    )
    yield process
    assert process.stop() == 0, process.output()


async def upgrade(gateway: Gateway, host: str, origin: str | None) -> bytes:
    """The server's answer to a WebSocket upgrade with these Host and Origin headers."""
    port = int(gateway.url.rsplit(":", 1)[1])
    head = (
        f"GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
    )
    if origin is not None:
        head += f"Origin: {origin}\r\n"
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all((head + "\r\n").encode())
        answer = b""
        with trio.fail_after(WAIT):
            while b"\r\n\r\n" not in answer:
                answer += await stream.receive_some(4096)
            if not answer.startswith(b"HTTP/1.1 101"):
                while chunk := await stream.receive_some(4096):
                    answer += chunk
    return answer


def refused_by_origin(gateway: Gateway) -> float:
    text = httpx.get(gateway.url + "/metrics", timeout=WAIT).text
    for line in text.splitlines():
        if line.startswith('tidings_connections_refused_total{reason="origin"}'):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize(
    ("host", "origin"),
    [
        ("127.0.0.1:{port}", None),  # not a page: a server, a script, the CLI
        ("127.0.0.1:{port}", "http://127.0.0.1:{port}"),  # the gateway's own page
        ("localhost:{port}", APP),  # a listed origin
    ],
)
async def test_the_gateways_own_pages_listed_origins_and_non_browsers_are_admitted(
    gateway: Gateway, host: str, origin: str | None
) -> None:
    port = gateway.url.rsplit(":", 1)[1]
    answer = await upgrade(
        gateway, host.format(port=port), origin.format(port=port) if origin else None
    )
    assert answer.startswith(b"HTTP/1.1 101 "), answer


async def test_a_page_on_another_site_is_refused_with_403_and_counted(gateway: Gateway) -> None:
    port = gateway.url.rsplit(":", 1)[1]
    before = await trio.to_thread.run_sync(refused_by_origin, gateway)
    answer = await upgrade(gateway, f"127.0.0.1:{port}", "https://evil.example")
    assert answer.startswith(b"HTTP/1.1 403 "), answer
    assert b"origin 'https://evil.example' may not open a WebSocket" in answer
    assert b"REALTIME_ALLOWED_ORIGINS" in answer
    assert await trio.to_thread.run_sync(refused_by_origin, gateway) == before + 1


async def test_dns_rebinding_to_a_loopback_gateway_is_refused(gateway: Gateway) -> None:
    """The page's origin and the Host agree (same-origin to the browser), but the name is not
    the gateway's: someone pointed evil.example at 127.0.0.1."""
    port = gateway.url.rsplit(":", 1)[1]
    answer = await upgrade(gateway, f"evil.example:{port}", f"http://evil.example:{port}")
    assert answer.startswith(b"HTTP/1.1 403 "), answer
    assert b"DNS rebinding" in answer


async def test_a_non_browser_client_may_name_any_host(gateway: Gateway) -> None:
    """Without an Origin the request is not a page's, so rebinding is not in play: a script
    reaching the gateway through a name of its own (a proxy, /etc/hosts) is served."""
    answer = await upgrade(gateway, "gateway.internal", None)
    assert answer.startswith(b"HTTP/1.1 101 "), answer
