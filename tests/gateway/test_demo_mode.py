"""Demo mode stays local: its tokens are its own, other sites cannot use it, it stays on loopback.

Real ``tidings serve --demo`` processes on the memory broker, sharing ``REALTIME_SECRET`` with a
normal gateway, spoken to over real HTTP and WebSocket.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import trio

from tests.conftest import SECRET
from tests.support.processes import TIDINGS, Gateway, process_env
from tests.support.wsclient import connect

from .support import WAIT, close_code, token, unique

LISTED = "http://app.example:3000"
"""An origin on the demo gateway's REALTIME_ALLOWED_ORIGINS."""


def _env(**settings: str) -> dict[str, str]:
    return process_env(REALTIME_SECRET=SECRET, REALTIME_BROKER="memory", **settings)


@pytest.fixture(scope="module")
def demo() -> Iterator[Gateway]:
    gateway = Gateway(_env(REALTIME_ALLOWED_ORIGINS=LISTED), "--demo")
    yield gateway
    assert gateway.stop() == 0, gateway.output()


@pytest.fixture(scope="module")
def normal() -> Iterator[Gateway]:
    """A gateway with the demo gateway's secret, not in demo mode."""
    gateway = Gateway(_env())
    yield gateway
    assert gateway.stop() == 0, gateway.output()


async def request(
    gateway: Gateway,
    method: str,
    path: str,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
    params: dict[str, str] | None = None,
) -> httpx.Response:
    call = partial(
        httpx.request,
        method,
        gateway.url + path,
        headers=headers,
        content=content,
        params=params,
        timeout=WAIT,
    )
    return await trio.to_thread.run_sync(call)


async def demo_token(gateway: Gateway, user: str) -> str:
    response = await request(gateway, "GET", "/demo/token", params={"user": user})
    assert response.status_code == 200, response.text
    minted: str = response.json()["token"]
    return minted


def _json(channel: str, data: Any) -> bytes:
    return json.dumps({"channel": channel, "event": "e", "data": data}).encode()


JSON = {"content-type": "application/json"}


# -- Demo tokens are the demo process's own -------------------------------------------------------


async def test_a_demo_token_works_on_its_gateway(demo: Gateway) -> None:
    async with connect(demo.ws_url, await demo_token(demo, "ann")) as client:
        assert client.connected["type"] == "connected", client.connected
        assert client.connected["data"]["user_id"] == "ann"
        await client.subscribe(unique("private-demo"))  # the demo grant: private-**


async def test_a_demo_token_is_refused_by_a_normal_gateway_with_the_same_secret(
    demo: Gateway, normal: Gateway
) -> None:
    minted = await demo_token(demo, "1")
    async with connect(normal.ws_url, minted) as client:
        assert client.connected["type"] == "error", client.connected
        assert client.connected["data"]["code"] == 401
        assert "signature" in client.connected["data"]["message"]
        assert await close_code(client) == 4401


async def test_a_demo_token_is_refused_by_another_demo_gateway(demo: Gateway) -> None:
    """The demo key is random per process, not derived from the shared REALTIME_SECRET."""
    other = Gateway(_env(), "--demo")
    try:
        async with connect(other.ws_url, await demo_token(demo, "1")) as client:
            assert client.connected["type"] == "error", client.connected
            assert await close_code(client) == 4401
    finally:
        assert other.stop() == 0, other.output()


async def test_tokens_of_the_application_still_work_in_demo_mode(demo: Gateway) -> None:
    async with connect(demo.ws_url, token("app-user")) as client:
        assert client.connected["data"]["user_id"] == "app-user"


# -- Demo endpoints refuse other sites ------------------------------------------------------------


async def test_a_cross_site_broadcast_is_refused_and_publishes_nothing(demo: Gateway) -> None:
    channel = unique("public.demo")
    async with connect(demo.ws_url) as client:
        await client.subscribe(channel)
        cross_site = await request(
            demo,
            "POST",
            "/demo/broadcast",
            headers={**JSON, "origin": "http://evil.example"},
            content=_json(channel, "cross-site"),
        )
        assert cross_site.status_code == 403, cross_site.text
        assert "http://evil.example" in cross_site.json()["error"]
        assert "access-control-allow-origin" not in cross_site.headers
        plain_text = await request(
            demo,
            "POST",
            "/demo/broadcast",
            headers={"content-type": "text/plain", "origin": demo.url},
            content=_json(channel, "text/plain"),
        )
        assert plain_text.status_code == 415, plain_text.text
        assert "application/json" in plain_text.json()["error"]
        form = await request(
            demo,
            "POST",
            "/demo/broadcast",
            headers={"content-type": "application/x-www-form-urlencoded"},
            content=_json(channel, "form"),
        )
        assert form.status_code == 415, form.text
        same_origin = await request(
            demo,
            "POST",
            "/demo/broadcast",
            headers={"content-type": "application/json; charset=utf-8", "origin": demo.url},
            content=_json(channel, "same-origin"),
        )
        assert same_origin.status_code == 200, same_origin.text
        [event] = await client.events(1)
        assert event["data"] == "same-origin"  # nothing refused was published before it


async def test_a_listed_origin_may_use_the_demo_endpoints(demo: Gateway) -> None:
    minted = await request(
        demo, "GET", "/demo/token", headers={"origin": LISTED}, params={"user": "listed"}
    )
    assert minted.status_code == 200, minted.text
    assert minted.headers["access-control-allow-origin"] == LISTED
    published = await request(
        demo,
        "POST",
        "/demo/broadcast",
        headers={**JSON, "origin": LISTED, "sec-fetch-site": "cross-site"},
        content=_json(unique("public.listed"), 1),
    )
    assert published.status_code == 200, published.text


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"origin": "http://evil.example"}, "http://evil.example"),
        ({"origin": "null"}, "'null'"),
        ({"sec-fetch-site": "cross-site"}, "cross-site"),
    ],
    ids=["other-origin", "null-origin", "cross-site-fetch"],
)
async def test_a_demo_token_is_not_minted_for_another_site(
    demo: Gateway, headers: dict[str, str], words: str
) -> None:
    response = await request(demo, "GET", "/demo/token", headers=headers, params={"user": "x"})
    assert response.status_code == 403, response.text
    assert words in response.json()["error"]
    assert "token" not in response.json()


@pytest.mark.parametrize(
    "headers",
    [{}, {"sec-fetch-site": "same-origin"}, {"sec-fetch-site": "none"}],
    ids=["no-origin", "same-origin-fetch", "typed-url"],
)
async def test_a_demo_token_is_minted_for_the_page_itself(
    demo: Gateway, headers: dict[str, str]
) -> None:
    same = {"origin": demo.url, **headers} if headers else headers
    response = await request(demo, "GET", "/demo/token", headers=same, params={"user": "me"})
    assert response.status_code == 200, response.text


async def test_a_rebound_host_name_is_refused(demo: Gateway) -> None:
    """DNS rebinding: evil.example resolves to 127.0.0.1, so its page is same-origin by Host."""
    port = urlsplit(demo.url).port
    rebound = {"host": f"evil.example:{port}", "origin": f"http://evil.example:{port}"}
    minted = await request(demo, "GET", "/demo/token", headers=rebound, params={"user": "1"})
    assert minted.status_code == 403, minted.text
    assert "DNS rebinding" in minted.json()["error"]
    published = await request(
        demo,
        "POST",
        "/demo/broadcast",
        headers={**JSON, **rebound},
        content=_json(unique("public.rebound"), 1),
    )
    assert published.status_code == 403, published.text
    localhost = await request(
        demo, "GET", "/demo/token", headers={"host": f"localhost:{port}"}, params={"user": "1"}
    )
    assert localhost.status_code == 200, localhost.text


# -- Bad input: 400 naming the parameter ----------------------------------------------------------


@pytest.mark.parametrize(
    "user", ["a b", "..", "a..b", ".a", "", "   ", "x" * 65, "a\x00b", "a/b", "ü" * 3, "<script>"]
)
async def test_a_bad_user_is_400_naming_the_parameter(demo: Gateway, user: str) -> None:
    response = await request(demo, "GET", "/demo/token", params={"user": user})
    assert response.status_code == 400, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["parameter"] == "user"
    assert "'user'" in body["error"]


async def test_a_missing_user_is_400_naming_the_parameter(demo: Gateway) -> None:
    response = await request(demo, "GET", "/demo/token")
    assert response.status_code == 400, response.text
    assert response.json()["parameter"] == "user"


async def test_a_bad_demo_broadcast_body_is_400(demo: Gateway) -> None:
    for body in (b"{nope", b'{"channel":"bad channel!","event":"e"}', b"[]", b"42"):
        response = await request(demo, "POST", "/demo/broadcast", headers=JSON, content=body)
        assert response.status_code == 400, (body, response.text)
        assert response.json()["error"]


async def test_demo_endpoints_do_not_exist_on_a_normal_gateway(normal: Gateway) -> None:
    assert (await request(normal, "GET", "/demo/token", params={"user": "1"})).status_code == 404
    posted = await request(normal, "POST", "/demo/broadcast", headers=JSON, content=b"{}")
    assert posted.status_code == 404


# -- Demo mode stays on loopback ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "settings"),
    [
        (["--demo", "--host", "0.0.0.0"], {}),
        (["--host", "::"], {"REALTIME_DEMO": "true"}),
        ([], {"REALTIME_DEMO": "true", "REALTIME_WS_HOST": "0.0.0.0"}),
    ],
    ids=["flag", "env-demo", "env-host"],
)
def test_demo_on_a_public_address_refuses_to_start_and_says_why(
    args: list[str], settings: dict[str, str]
) -> None:
    result = subprocess.run(
        [TIDINGS, "serve", "--port", "0", *args],
        env=_env(**settings),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "demo page" not in result.stdout  # it never listened
    assert "refusing --demo on" in result.stderr
    assert "mint tokens for any user and publish to any channel" in result.stderr
    assert "--demo-public" in result.stderr


def test_demo_public_lets_a_public_address_through() -> None:
    """With --demo-public the refusal is lifted. Tests listen on loopback only, so the address is
    one from TEST-NET-1 (RFC 5737) that this machine does not have: the command gets past the
    demo check and then fails to listen, which shows the flag did its job without opening a
    public socket."""
    result = subprocess.run(
        [TIDINGS, "serve", "--port", "0", "--demo", "--host", "192.0.2.1", "--demo-public"],
        env=_env(),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "refusing --demo" not in result.stderr, result.stderr
    assert result.returncode == 1, result.stdout + result.stderr
    assert "cannot listen on 192.0.2.1" in result.stderr


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
async def test_demo_on_loopback_needs_no_flag(host: str) -> None:
    gateway = Gateway(_env(), "--demo", "--host", host)
    assert gateway.stop() == 0, gateway.output()
