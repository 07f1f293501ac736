"""The browser client imported from another origin, in Chromium (issue 13, part 6; ADR 0026).

A page served by a static server of its own (127.0.0.1, another port: another origin) imports
``client.js`` from a gateway, which CORS allows only for the origins of
``REALTIME_ALLOWED_ORIGINS``; and imports the npm package's own file as an application without a
bundler serves it (from its node_modules, through an import map). Either way the client connects
to the gateway, subscribes, and receives what ``POST /broadcast`` publishes.
"""

from __future__ import annotations

import functools
import threading
from collections.abc import Callable, Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from tests.support.npm import NAME, install, pack

CHANNEL = "public.cross-origin"

# Each page leaves what happened in window: `rt` once the module ran, `received` the data of
# every "hello" event, `importFailed` when its module script could not be loaded.
PAGE = """<!doctype html>
<meta charset="utf-8">
<title>tidings from elsewhere</title>
%(head)s
<script>window.received = []; window.importFailed = false;</script>
<script type="module" onerror="window.importFailed = true">
  import { Tidings } from "%(module)s";
  const rt = new Tidings("%(ws)s");
  rt.subscribe("%(channel)s").on("hello", (data) => window.received.push(data));
  window.rt = rt;
</script>
"""


class _Quiet(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Test output is no place for an access log."""


class PageServer:
    """A static HTTP server on 127.0.0.1 (its own port, so its own origin) serving ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        handler = functools.partial(_Quiet, directory=str(root))
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.origin = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    def page(self, name: str, module: str, ws: str, head: str = "") -> str:
        """Write a page importing ``module`` and connecting to ``ws``; its URL."""
        text = PAGE % {"head": head, "module": module, "ws": ws, "channel": CHANNEL}
        (self.root / name).write_text(text)
        return f"{self.origin}/{name}"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An application's directory with the npm package installed from its tarball."""
    project = tmp_path_factory.mktemp("app")
    install(pack(tmp_path_factory.mktemp("pack")), project)
    return project


@pytest.fixture(scope="module")
def pages(app: Path) -> Iterator[PageServer]:
    server = PageServer(app)
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def open_page(browser: Any) -> Iterator[Callable[[], Any]]:
    """New pages, each in a context of its own; closed after the test."""
    contexts: list[Any] = []

    def new() -> Any:
        context = browser.new_context()
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(10_000)
        page.errors = []
        page.on("pageerror", lambda exc: page.errors.append(str(exc)))
        return page

    yield new
    for context in contexts:
        context.close()


def _ws(gateway: Any) -> str:
    return gateway.url.replace("http://", "ws://", 1) + "/ws"


def _receives_a_broadcast(page: Any, gateway: Any) -> None:
    """The page's client is connected and subscribed, and receives what the gateway publishes."""
    page.wait_for_function(f"window.rt?.channel('{CHANNEL}')?.state === 'subscribed'")
    assert page.evaluate("rt.url") == _ws(gateway)
    gateway.broadcast(CHANNEL, "hello", {"from": "the backend"})
    page.wait_for_function("window.received.length > 0")
    assert page.evaluate("window.received") == [{"from": "the backend"}]
    assert page.errors == []


def test_a_page_from_a_listed_origin_imports_client_js_from_the_gateway(
    open_page: Callable[[], Any], pages: PageServer, start_gateway: Callable[..., Any]
) -> None:
    gateway = start_gateway(REALTIME_ALLOWED_ORIGINS=pages.origin)
    assert not gateway.url.startswith(pages.origin)  # another origin: another port
    page = open_page()
    page.goto(pages.page("listed.html", f"{gateway.url}/client.js", _ws(gateway)))
    _receives_a_broadcast(page, gateway)


def test_a_page_from_an_origin_not_listed_cannot_import_client_js(
    open_page: Callable[[], Any], pages: PageServer, start_gateway: Callable[..., Any]
) -> None:
    gateway = start_gateway(REALTIME_ALLOWED_ORIGINS="https://app.example")
    page = open_page()
    url = pages.page("not-listed.html", f"{gateway.url}/client.js", _ws(gateway))
    with page.expect_console_message(lambda message: "CORS policy" in message.text) as refusal:
        page.goto(url)
    assert f"{gateway.url}/client.js" in refusal.value.text
    assert f"origin '{pages.origin}'" in refusal.value.text
    page.wait_for_function("window.importFailed")
    assert page.evaluate("typeof window.rt") == "undefined"
    gateway.wait_for_connections(0)


def test_an_app_serving_the_npm_package_itself_imports_it_and_connects(
    open_page: Callable[[], Any], pages: PageServer, start_gateway: Callable[..., Any]
) -> None:
    """As an application without a bundler ships it: node_modules served with the app's pages,
    the package's name mapped to its file by an import map."""
    gateway = start_gateway(REALTIME_ALLOWED_ORIGINS=pages.origin)
    import_map = (
        '<script type="importmap">'
        f'{{"imports": {{"{NAME}": "/node_modules/{NAME}/client.js"}}}}'
        "</script>"
    )
    page = open_page()
    page.goto(pages.page("npm.html", NAME, _ws(gateway), head=import_map))
    _receives_a_broadcast(page, gateway)
