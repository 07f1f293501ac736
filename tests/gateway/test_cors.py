"""CORS on the HTTP endpoints follows REALTIME_ALLOWED_ORIGINS, over real HTTP to ``tidings serve``.

Browsers read a cross-origin answer only when it carries ``Access-Control-Allow-Origin`` naming
their page's origin; an origin that is not allowed gets no CORS header, so its page cannot read
the answer (nor import ``/client.js`` as a module script).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from functools import partial

import httpx
import pytest
import trio

from tests.conftest import API_KEY, SECRET
from tests.support.processes import TIDINGS, Gateway, process_env

from .support import WAIT, unique

LISTED = "HTTPS://App.Example:443, http://localhost:3000"
APP = "https://app.example"
DEV = "http://localhost:3000"
OTHER = "https://evil.example"


def _env(**settings: str) -> dict[str, str]:
    return process_env(
        REALTIME_SECRET=SECRET, REALTIME_API_KEY=API_KEY, REALTIME_BROKER="memory", **settings
    )


@pytest.fixture(scope="module")
def listed() -> Iterator[Gateway]:
    gateway = Gateway(_env(REALTIME_ALLOWED_ORIGINS=LISTED))
    yield gateway
    assert gateway.stop() == 0, gateway.output()


@pytest.fixture(scope="module")
def anyone() -> Iterator[Gateway]:
    gateway = Gateway(_env(REALTIME_ALLOWED_ORIGINS="*"))
    yield gateway
    assert gateway.stop() == 0, gateway.output()


async def request(
    gateway: Gateway,
    method: str,
    path: str,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Response:
    call = partial(
        httpx.request, method, gateway.url + path, headers=headers, content=content, timeout=WAIT
    )
    return await trio.to_thread.run_sync(call)


def _vary(response: httpx.Response) -> list[str]:
    return [part.strip().lower() for part in response.headers.get("vary", "").split(",")]


@pytest.mark.parametrize("path", ["/healthz", "/client.js", "/metrics", "/"])
@pytest.mark.parametrize("origin", [APP, DEV])
async def test_an_allowed_origin_is_granted(listed: Gateway, path: str, origin: str) -> None:
    response = await request(listed, "GET", path, {"origin": origin})
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == origin
    assert "origin" in _vary(response)


@pytest.mark.parametrize(
    "origin", [OTHER, "http://app.example", "https://app.example:8443", "null"]
)
async def test_another_origin_gets_no_cors_header(listed: Gateway, origin: str) -> None:
    response = await request(listed, "GET", "/client.js", {"origin": origin})
    assert response.status_code == 200  # served, but the browser keeps the page from it
    assert "access-control-allow-origin" not in response.headers
    assert "origin" in _vary(response)  # so that a cache does not hand one answer to another


async def test_a_request_without_origin_gets_no_cors_header(listed: Gateway) -> None:
    response = await request(listed, "GET", "/healthz")
    assert "access-control-allow-origin" not in response.headers


async def test_the_gateways_own_page_is_allowed(listed: Gateway) -> None:
    response = await request(listed, "GET", "/client.js", {"origin": listed.url})
    assert response.headers["access-control-allow-origin"] == listed.url


async def test_preflight_of_an_allowed_origin_is_204_with_what_may_be_sent(
    listed: Gateway,
) -> None:
    response = await request(
        listed,
        "OPTIONS",
        "/broadcast",
        {
            "origin": APP,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization, content-type",
        },
    )
    assert response.status_code == 204, response.text
    assert response.headers["access-control-allow-origin"] == APP
    methods = {m.strip() for m in response.headers["access-control-allow-methods"].split(",")}
    assert "POST" in methods
    allowed = response.headers["access-control-allow-headers"].lower()
    assert "authorization" in allowed and "content-type" in allowed
    assert int(response.headers["access-control-max-age"]) > 0
    assert "origin" in _vary(response)


async def test_preflight_of_another_origin_gets_no_grant(listed: Gateway) -> None:
    response = await request(
        listed,
        "OPTIONS",
        "/broadcast",
        {"origin": OTHER, "access-control-request-method": "POST"},
    )
    assert response.status_code == 403, response.text
    assert "access-control-allow-origin" not in response.headers
    assert "access-control-allow-methods" not in response.headers
    assert OTHER in response.json()["error"]
    assert "REALTIME_ALLOWED_ORIGINS" in response.json()["error"]


async def test_preflight_of_an_unknown_path_is_404(listed: Gateway) -> None:
    response = await request(
        listed, "OPTIONS", "/nope", {"origin": APP, "access-control-request-method": "GET"}
    )
    assert response.status_code == 404


async def test_an_allowed_origin_may_broadcast_with_the_api_key(listed: Gateway) -> None:
    body = f'{{"channel":"{unique("public.cors")}","event":"e"}}'.encode()
    response = await request(
        listed,
        "POST",
        "/broadcast",
        {"origin": DEV, "authorization": f"Bearer {API_KEY}", "content-type": "application/json"},
        body,
    )
    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == DEV


async def test_a_refusal_to_an_allowed_origin_is_readable(listed: Gateway) -> None:
    """A page of an allowed origin can read why it was refused (401 without the key)."""
    response = await request(listed, "POST", "/broadcast", {"origin": APP}, b"{}")
    assert response.status_code == 401
    assert response.headers["access-control-allow-origin"] == APP


@pytest.mark.parametrize("origin", [OTHER, "null", "http://127.0.0.1:1"])
async def test_star_allows_every_origin(anyone: Gateway, origin: str) -> None:
    response = await request(anyone, "GET", "/client.js", {"origin": origin})
    assert response.headers["access-control-allow-origin"] == origin


def test_a_malformed_origin_list_stops_the_start_naming_variable_and_entry() -> None:
    result = subprocess.run(
        [TIDINGS, "serve", "--port", "0"],
        env=_env(REALTIME_ALLOWED_ORIGINS="https://ok.example, app.example:3000"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stdout + result.stderr
    assert "REALTIME_ALLOWED_ORIGINS" in result.stderr
    assert "'app.example:3000'" in result.stderr
