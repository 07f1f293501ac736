"""examples/django: the shop under gunicorn ``--preload -w 2``, driven like a browser would.

A customer logs in over HTTP and gets a connection token, opens a WebSocket to the real gateway
with it, and hears of their order when staff ship it; the staff hear on ``admin.orders``. A
shipment that rolls back (one of its orders was shipped already) broadcasts nothing. Runs once
with the app publishing through the gateway (memory broker) and once through Kafka.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from ..conftest import SECRET
from ..support.processes import Gateway, process_env
from ..support.wsclient import connect
from .conftest import BIN, EXAMPLES, AppProcess, off_loop

SHOP = EXAMPLES / "django"


def manage(env: dict[str, str], *args: str) -> str:
    """``python manage.py ARGS`` in the example; its output, or a failure that shows it."""
    done = subprocess.run(
        [sys.executable, "manage.py", *args],
        env=env,
        cwd=SHOP,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=180,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, f"manage.py {' '.join(args)} exited {done.returncode}:\n{output}"
    return output


class Browser:
    """One user's browser: its cookies (the session), and Django's CSRF token on every POST,
    taken from the cookie the shop's page sets, as the page's script does."""

    def __init__(self, url: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        self.http.get("/").raise_for_status()

    def post(self, path: str, data: dict[str, Any]) -> httpx.Response:
        return self.http.post(
            path, data=data, headers={"X-CSRFToken": self.http.cookies["csrftoken"]}
        )

    def get(self, path: str) -> httpx.Response:
        return self.http.get(path)

    def login(self, username: str, password: str) -> dict[str, Any]:
        answer = self.post("/login", {"username": username, "password": password})
        assert answer.status_code == 200, answer.text
        body: dict[str, Any] = answer.json()
        return body


@pytest.fixture
def shop(
    app_env: dict[str, str],
    live_gateway: Gateway,
    start_app: Callable[..., AppProcess],
    app_port: int,
    tmp_path: Path,
) -> str:
    """The shop, migrated, with its demo data, under gunicorn; its URL."""
    env = {
        **app_env,
        "DJANGO_DATABASE": str(tmp_path / "shop.sqlite3"),
        "DJANGO_SECRET_KEY": "test-" + "k" * 50,
        "TIDINGS_WS_URL": live_gateway.ws_url,
    }
    manage(env, "migrate", "--no-input")
    manage(env, "demo_data")
    app = start_app(
        [
            str(BIN / "gunicorn"),
            "--preload",
            "--workers=2",
            f"--bind=127.0.0.1:{app_port}",
            "--access-logfile=-",
            "--no-control-socket",  # its default path is per user: shared by parallel runs
            "shop.wsgi",
        ],
        env,
        SHOP,
    )
    url = f"http://127.0.0.1:{app_port}"
    app.wait_for_http(url + "/")
    return url


async def test_shipping_reaches_the_customer_after_commit_and_a_rollback_sends_nothing(
    shop: str,
) -> None:
    ann = await off_loop(Browser, shop)
    wrong = await off_loop(ann.post, "/login", {"username": "ann", "password": "guess"})
    assert wrong.status_code == 401, wrong.text
    assert "token" not in wrong.json()
    assert (await off_loop(ann.get, "/realtime/token")).status_code == 401

    customer = await off_loop(ann.login, "ann", "ann-password")
    assert customer["channel"] == f"user.{customer['user_id']}"
    bob = await off_loop(Browser, shop)
    staff = await off_loop(bob.login, "bob", "bob-password")
    orders = (await off_loop(ann.get, "/orders")).json()["orders"]
    assert [order["status"] for order in orders] == ["pending"] * 3
    first, second, third = (order["order_id"] for order in orders)

    async with (
        connect(customer["ws_url"], customer["token"]) as ann_ws,
        connect(staff["ws_url"], staff["token"]) as bob_ws,
    ):
        await ann_ws.subscribe(customer["channel"])
        await bob_ws.subscribe("admin.orders")

        shipped = await off_loop(bob.post, "/orders/ship", {"order": [third]})
        assert shipped.status_code == 200, shipped.text
        [event] = await ann_ws.events(1)
        assert event["event"] == "order.updated"
        assert event["data"] == {
            "order_id": third,
            "customer_id": customer["user_id"],
            "item": "Milk jug",
            "status": "shipped",
        }
        [event] = await bob_ws.events(1)
        assert (event["event"], event["data"]) == (
            "order.status_changed",
            {"order_id": third, "customer_id": customer["user_id"], "status": "shipped"},
        )

        # The first order is shipped and its broadcast registered, then the third fails: the
        # transaction rolls back, and the broadcast with it.
        refused = await off_loop(bob.post, "/orders/ship", {"order": [first, third]})
        assert refused.status_code == 409, refused.text
        assert f"order {third} is shipped" in refused.json()["error"]

        # A broadcast the rollback had let through would have been acknowledged before the 409
        # answer (the view waits for the broker), so it would come before this one.
        shipped = await off_loop(bob.post, "/orders/ship", {"order": [second]})
        assert shipped.status_code == 200, shipped.text
        [event] = await ann_ws.events(1)
        assert (event["data"]["order_id"], event["data"]["status"]) == (second, "shipped")
        [event] = await bob_ws.events(1)
        assert event["data"]["order_id"] == second

    statuses = {
        order["order_id"]: order["status"]
        for order in (await off_loop(ann.get, "/orders")).json()["orders"]
    }
    assert statuses == {first: "pending", second: "shipped", third: "shipped"}


def test_the_shops_own_tests_pass() -> None:
    """``manage.py test``: the unit tests a Django project keeps, with ``FakeRealtime`` and
    ``captureOnCommitCallbacks`` (examples/django/orders/tests.py)."""
    output = manage(process_env(REALTIME_SECRET=SECRET), "test", "orders")
    assert re.search(r"^Ran [1-9]\d* tests? ", output, re.MULTILINE), output
