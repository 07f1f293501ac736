"""Server-Sent Events in Chromium: the browser's own ``EventSource``, and client.js's fallback.

The stream is cut under the browser by a small TCP relay between Chromium and the gateway
(``Relay.cut``): the browser sees its stream end, as when a proxy or a gateway drops it, and
reconnects by itself with ``Last-Event-ID``, which the relay sees in the request.
"""

from __future__ import annotations

import socket
import threading
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import pytest
from playwright.sync_api import Page

pytestmark = pytest.mark.browser


class Relay:
    """Forwards 127.0.0.1:<port> to the gateway; remembers each request's head; can cut every
    connection open now."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self._target = (parts.hostname or "127.0.0.1", parts.port or 80)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.heads: list[str] = []
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self._target)
            with self._lock:
                self._open += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, requests: bool) -> None:
        try:
            while data := source.recv(65_536):
                if requests and b"HTTP/1.1\r\n" in data:
                    self.heads.append(data.decode("latin-1"))
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def cut(self) -> None:
        """End every connection open now (new ones go through)."""
        with self._lock:
            doomed, self._open = self._open, []
        for end in doomed:
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            end.close()

    def close(self) -> None:
        self._listener.close()
        self.cut()


@pytest.fixture
def relay(demo_gateway: Any) -> Iterator[Relay]:
    running = Relay(demo_gateway.url)
    try:
        yield running
    finally:
        running.close()


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


def _page(browser: Any, url: str) -> Page:
    context = browser.new_context()
    page: Page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(url + "/healthz")  # any page of the gateway's origin
    return page


def test_event_source_resumes_every_channel_after_the_stream_is_cut(
    browser: Any, demo_gateway: Any, relay: Relay
) -> None:
    a, b = unique("public.sse-a"), unique("public.sse-b")
    page = _page(browser, relay.url)
    page.evaluate(
        """(channels) => {
            window.got = []; window.opened = 0; window.lastId = null;
            const source = new EventSource('/sse?channels=' + channels);
            source.onmessage = (e) => {
                got.push(JSON.parse(e.data).data);
                lastId = e.lastEventId;
            };
            source.addEventListener('connected', () => { opened += 1; });
            window.source = source;
        }""",
        f"{a},{b}",
    )
    page.wait_for_function("opened === 1")
    demo_gateway.broadcast(a, "e", "a1")
    demo_gateway.broadcast(b, "e", "b1")
    page.wait_for_function("got.length === 2")
    last_id = page.evaluate("lastId")
    assert a in last_id and b in last_id

    relay.cut()
    for data in ("a2", "b2", "a3"):  # while the browser waits its retry delay
        demo_gateway.broadcast(a if data.startswith("a") else b, "e", data)
    page.wait_for_function("opened === 2")  # the browser reconnected on its own
    demo_gateway.broadcast(b, "e", "b3")
    page.wait_for_function("got.length === 6")
    got = page.evaluate("got")
    assert sorted(got) == ["a1", "a2", "a3", "b1", "b2", "b3"], got  # none lost, none twice
    assert got.index("a2") < got.index("a3") and got.index("b2") < got.index("b3")
    resumed = [head for head in relay.heads if head.startswith("GET /sse")][-1]
    assert f"last-event-id: {last_id}" in resumed.lower(), resumed
    page.context.close()


def test_client_js_on_sse_receives_resumes_and_refuses_to_trigger(
    browser: Any, demo_gateway: Any, relay: Relay
) -> None:
    channel = unique("public.forced")
    page = _page(browser, relay.url)
    page.evaluate(
        """async (channel) => {
            const { Tidings } = await import('/client.js');
            window.got = [];
            window.transports = [];
            const rt = new Tidings(undefined, { transport: 'sse', minDelay: 100, maxDelay: 200 });
            rt.on('transport', (t) => transports.push(t));
            rt.subscribe(channel).on('message', (frame) => got.push(frame.data));
            window.rt = rt;
        }""",
        channel,
    )
    page.wait_for_function("rt.state === 'connected' && rt.transport === 'sse'")
    page.wait_for_function("(c) => rt.channel(c).state === 'subscribed'", arg=channel)
    demo_gateway.broadcast(channel, "e", 1)
    page.wait_for_function("got.length === 1")
    refused = page.evaluate(
        """() => {
            try { rt.channel(rt.subscriptions.keys().next().value).trigger('client-hi'); }
            catch (e) { return e.message; }
        }"""
    )
    assert "Server-Sent Events" in refused and "receive" in refused
    before = page.evaluate("rt.connectionId")
    relay.cut()
    demo_gateway.broadcast(channel, "e", 2)
    page.wait_for_function("(id) => rt.state === 'connected' && rt.connectionId !== id", arg=before)
    demo_gateway.broadcast(channel, "e", 3)
    page.wait_for_function("got.length === 3")
    assert page.evaluate("got") == [1, 2, 3]
    resumed = [head for head in relay.heads if head.startswith("GET /sse")][-1]
    assert "lastEventId=" in resumed, resumed
    assert page.evaluate("transports") == ["sse"]
    # A channel the gateway refuses fails that subscription, with the reason, as on WebSocket;
    # the others go on.
    refusal = page.evaluate(
        """() => new Promise((ok) => rt.subscribe('private-room.x').on('error', (e) =>
            ok({ code: e.code, channel: e.channel, message: e.message })))"""
    )
    assert refusal["code"] == 401 and refusal["channel"] == "private-room.x"
    assert "needs a token" in refusal["message"]
    page.wait_for_function("rt.state === 'connected'")
    demo_gateway.broadcast(channel, "e", 4)
    page.wait_for_function("got.length === 4")
    assert page.evaluate("[got, rt.channel('private-room.x')]") == [[1, 2, 3, 4], None]
    page.context.close()


def test_client_js_falls_back_to_sse_when_websocket_cannot_connect(
    browser: Any, demo_gateway: Any
) -> None:
    channel = unique("public.fallback")
    page = _page(browser, demo_gateway.url)
    page.evaluate(
        """async (channel) => {
            const { Tidings } = await import('/client.js');
            // A WebSocket that never connects, as behind a proxy that refuses the upgrade.
            class Blocked {
                constructor() {
                    this.readyState = 0;
                    window.attempts = (window.attempts ?? 0) + 1;
                    setTimeout(() => { this.readyState = 3; this.onclose?.({ code: 1006 }); }, 5);
                }
                send() {}
                close() {}
            }
            window.got = [];
            window.transports = [];
            const rt = new Tidings(undefined, {
                WebSocket: Blocked, sseAfter: 2, minDelay: 20, maxDelay: 40,
            });
            rt.on('transport', (t) => transports.push(t));
            rt.subscribe(channel).on('message', (frame) => got.push(frame.data));
            window.rt = rt;
        }""",
        channel,
    )
    page.wait_for_function("rt.state === 'connected'")
    assert page.evaluate("[rt.transport, transports, attempts]") == ["sse", ["sse"], 2]
    page.wait_for_function("(c) => rt.channel(c).state === 'subscribed'", arg=channel)
    demo_gateway.broadcast(channel, "e", "over sse")
    page.wait_for_function("got.length === 1")
    assert page.evaluate("got") == ["over sse"]
    # A channel added while on SSE opens a new stream with every channel, positions kept.
    other = unique("public.fallback-other")
    page.evaluate("(c) => rt.subscribe(c).on('message', (f) => got.push(f.data))", other)
    page.wait_for_function("(c) => rt.channel(c).state === 'subscribed'", arg=other)
    demo_gateway.broadcast(other, "e", "second channel")
    demo_gateway.broadcast(channel, "e", "first again")
    page.wait_for_function("got.length === 3")
    assert sorted(page.evaluate("got")) == ["first again", "over sse", "second channel"]
    page.context.close()
