"""examples/fastapi: the shop served by uvicorn, logged into over HTTP, its broadcasts heard by a
WebSocket client of a real gateway (memory broker through the gateway publisher, and Kafka);
then the shop's own unit tests, the way its authors would write them with ``fake_realtime``."""

from __future__ import annotations

import functools
import importlib.util
from collections.abc import AsyncIterator
from types import ModuleType
from typing import Any

import httpx
import pytest
import trio

from tidings import BrokerUnavailable
from tidings.testing import FakeRealtime

from ..support.processes import Gateway
from ..support.wsclient import connect
from .conftest import BIN, EXAMPLES, AppProcess

EXAMPLE = EXAMPLES / "fastapi"
STAFF = ("staff", "backoffice")
ALICE = ("alice", "wonderland")  # user 42, customer of orders 1001 and 1002
BOB = ("bob", "builder")  # user 43, no staff


async def post(url: str, auth: tuple[str, str]) -> httpx.Response:
    """A request from a trio test: httpx's blocking client on a worker thread."""
    return await trio.to_thread.run_sync(functools.partial(httpx.post, url, auth=auth, timeout=30))


async def test_a_customer_hears_their_order_ship_through_the_gateway(
    live_gateway: Gateway,
    app_env: dict[str, str],
    start_app: Any,
    app_port: int,
) -> None:
    shop: AppProcess = start_app(
        [str(BIN / "uvicorn"), "shop:app", "--host", "127.0.0.1", "--port", str(app_port)],
        {**app_env, "GATEWAY_WS_URL": live_gateway.ws_url},
        EXAMPLE,
    )
    base = f"http://127.0.0.1:{app_port}"
    await trio.to_thread.run_sync(shop.wait_for_http, f"{base}/openapi.json")

    refused = await post(f"{base}/login", ("alice", "rabbit-hole"))
    assert refused.status_code == 401, refused.text
    assert "token" not in refused.json()

    login = await post(f"{base}/login", ALICE)
    assert login.status_code == 200, login.text
    session = login.json()
    assert session["user_id"] == 42
    assert session["ws_url"] == live_gateway.ws_url

    async with (
        connect(session["ws_url"], session["token"]) as alice,
        connect(live_gateway.ws_url) as desk,
    ):
        await alice.subscribe("user.42")
        await desk.subscribe("admin.orders")
        # The token is alice's: another user's channel is refused by the gateway.
        await alice.send(type="subscribe", channel="user.43")
        refusal = await alice.expect(type="error", channel="user.43")
        assert refusal["data"]["code"] == 403

        # A customer may not ship: 403, and nothing is broadcast (the next event alice gets
        # is the one staff causes below, for the other order).
        assert (await post(f"{base}/orders/1001/ship", BOB)).status_code == 403
        assert (await post(f"{base}/orders/9999/ship", STAFF)).status_code == 404

        shipped = await post(f"{base}/orders/1002/ship", STAFF)
        assert shipped.status_code == 200, shipped.text
        assert shipped.json() == {"order_id": 1002, "status": "shipped"}

        [event] = await alice.events(1)
        assert (event["channel"], event["event"]) == ("user.42", "order.updated")
        assert event["data"] == {"order_id": 1002, "status": "shipped"}
        [feed] = await desk.events(1)
        assert (feed["channel"], feed["event"]) == ("admin.orders", "order.status_changed")
        assert feed["data"] == {"order_id": 1002, "status": "shipped", "by": "staff"}


# -- The shop's own tests: no gateway, no broker, no server ------------------------------------


@pytest.fixture
def shop() -> ModuleType:
    """A fresh copy of examples/fastapi/shop.py (its orders live in the module)."""
    spec = importlib.util.spec_from_file_location("fastapi_example_shop", EXAMPLE / "shop.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
async def client(shop: ModuleType, fake_realtime: FakeRealtime) -> AsyncIterator[httpx.AsyncClient]:
    """The app with ``fake_realtime`` as its ``RealtimePort`` (FastAPI's dependency override),
    called in the test's own event loop through httpx's ASGI transport: no server."""
    shop.app.dependency_overrides[shop.get_realtime] = lambda: fake_realtime
    transport = httpx.ASGITransport(app=shop.app)
    async with httpx.AsyncClient(transport=transport, base_url="http://shop.test") as client:
        yield client


async def test_shipping_tells_the_customer_and_the_staff_feed(
    client: httpx.AsyncClient, fake_realtime: FakeRealtime
) -> None:
    response = await client.post("/orders/1001/ship", auth=STAFF)

    assert response.status_code == 200
    fake_realtime.assert_broadcast(
        "user.42", "order.updated", {"order_id": 1001, "status": "shipped"}
    )
    fake_realtime.assert_broadcast(
        "admin.orders",
        "order.status_changed",
        {"order_id": 1001, "status": "shipped", "by": "staff"},
    )


async def test_a_customer_cannot_ship_and_nothing_is_broadcast(
    client: httpx.AsyncClient, fake_realtime: FakeRealtime
) -> None:
    assert (await client.post("/orders/1001/ship", auth=ALICE)).status_code == 403
    assert (await client.post("/orders/1001/ship", auth=("staff", "guess"))).status_code == 401
    fake_realtime.assert_nothing_broadcast()


async def test_an_unreachable_broker_is_a_503_the_client_can_retry(
    client: httpx.AsyncClient, fake_realtime: FakeRealtime
) -> None:
    fake_realtime.fail_with(BrokerUnavailable(["127.0.0.1:9092"], "timed out"))

    response = await client.post("/orders/1001/ship", auth=STAFF)

    assert response.status_code == 503
    assert response.json() == {"detail": "live updates are unavailable, try again"}
