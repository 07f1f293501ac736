"""examples/flask: the storefront under gunicorn ``--preload -w 2``, and its unit tests.

The end-to-end test is also the fork-safety test of gunicorn's ``--preload``: the app factory
builds the publisher in gunicorn's master (``create_app`` calls ``broker()``), the two workers
are forked from it, and broadcasts from BOTH workers must reach a WebSocket client through the
real gateway, once with the app publishing through the gateway (memory broker) and once through
Kafka.
"""

from __future__ import annotations

import importlib
import subprocess
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from flask import Flask
from flask.testing import FlaskClient

from tidings import BrokerUnavailable
from tidings.testing import FakeRealtime

from ..support.processes import Gateway
from ..support.wsclient import Client, connect
from .conftest import BIN, EXAMPLES, AppProcess, off_loop

STOREFRONT = EXAMPLES / "flask"

MAX_ROUNDS = 20
"""Rounds of concurrent requests before giving up on seeing both workers answer. Concurrent
requests make the second worker take one while the first is busy; in practice the first
round or two does it."""


def login(url: str, username: str, password: str) -> tuple[httpx.Cookies, dict[str, Any]]:
    """Log in as a browser does: the session cookie and the answer (token, ws_url, channel)."""
    with httpx.Client(base_url=url, timeout=60) as http:
        answer = http.post("/login", json={"username": username, "password": password})
        assert answer.status_code == 200, answer.text
        return http.cookies, answer.json()


def set_status(url: str, cookies: httpx.Cookies, order_id: int, status: str) -> dict[str, Any]:
    """One request on a connection of its own, so that either worker may take it."""
    with httpx.Client(base_url=url, cookies=cookies, timeout=60) as http:
        answer = http.post(f"/orders/{order_id}/status", json={"status": status})
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    return body


@pytest.fixture
def storefront(
    app_env: dict[str, str],
    live_gateway: Gateway,
    start_app: Callable[..., AppProcess],
    app_port: int,
    tmp_path: Path,
) -> str:
    """The storefront with its demo data, under gunicorn with two preloaded workers; its URL."""
    env = {
        **app_env,
        "FLASK_DATABASE": str(tmp_path / "storefront.sqlite3"),
        "FLASK_SECRET_KEY": "test-" + "k" * 40,
        "FLASK_TIDINGS_WS_URL": live_gateway.ws_url,
    }
    done = subprocess.run(
        [str(BIN / "flask"), "--app", "storefront", "init-db"],
        env=env,
        cwd=STOREFRONT,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    app = start_app(
        [
            str(BIN / "gunicorn"),
            "--preload",
            "--workers=2",
            f"--bind=127.0.0.1:{app_port}",
            "--access-logfile=-",
            "--no-control-socket",  # its default path is per user: shared by parallel runs
            "storefront:create_app()",
        ],
        env,
        STOREFRONT,
    )
    url = f"http://127.0.0.1:{app_port}"
    app.wait_for_http(url + "/")
    # gunicorn.conf.py's when_ready broadcast, in the master before the fork, went through: the
    # workers inherit a publisher that has been used.
    assert "was not broadcast" not in app.output(), app.output()
    return url


async def test_broadcasts_from_both_preloaded_gunicorn_workers_reach_the_browser(
    storefront: str,
) -> None:
    wrong = await off_loop(
        partial(httpx.post, json={"username": "ann", "password": "guess"}, timeout=60),
        storefront + "/login",
    )
    assert wrong.status_code == 401, wrong.text
    assert "token" not in wrong.json()

    _, customer = await off_loop(login, storefront, "ann", "ann-password")
    staff_cookies, staff = await off_loop(login, storefront, "bob", "bob-password")
    with httpx.Client(base_url=storefront, cookies=staff_cookies, timeout=60) as http:
        orders = (await off_loop(http.get, "/orders")).json()["orders"]
    order_ids = [order["order_id"] for order in orders]
    assert order_ids and all(o["customer_id"] == customer["user_id"] for o in orders)

    async with (
        connect(customer["ws_url"], customer["token"]) as ann_ws,
        connect(staff["ws_url"], staff["token"]) as bob_ws,
    ):
        await ann_ws.subscribe(customer["channel"])
        await bob_ws.subscribe("admin.orders")
        workers: set[int] = set()
        for round_ in range(MAX_ROUNDS):
            status = ("packed", "shipped")[round_ % 2]
            answers = await set_all(storefront, staff_cookies, order_ids, status)
            assert all(answer["notified"] for answer in answers), answers
            expected = sorted((order_id, status) for order_id in order_ids)
            assert await received(ann_ws, len(order_ids)) == [
                (order_id, status, "order.updated") for order_id, status in expected
            ]
            assert await received(bob_ws, len(order_ids)) == [
                (order_id, status, "order.status_changed") for order_id, status in expected
            ]
            workers |= {answer["worker"] for answer in answers}
            if len(workers) == 2:
                break
        assert len(workers) == 2, f"only worker {workers} answered in {MAX_ROUNDS} rounds"


async def set_all(
    url: str, cookies: httpx.Cookies, order_ids: list[int], status: str
) -> list[dict[str, Any]]:
    """Set every order's status at once, one request each, all in flight together."""
    answers: list[dict[str, Any]] = []

    async def update(order_id: int) -> None:
        answers.append(await off_loop(set_status, url, cookies, order_id, status))

    async with trio.open_nursery() as nursery:
        for order_id in order_ids:
            nursery.start_soon(update, order_id)
    return answers


async def received(client: Client, count: int) -> list[tuple[int, str, str]]:
    """The next ``count`` order events as (order id, status, event), sorted: requests made
    together may be answered, and so broadcast, in any order.

    ``storefront.started``, which the master broadcast before the fork, is passed over: on
    Kafka it can still reach a client that subscribed after it was sent, because a gateway
    reads a topic created after it started from the topic's beginning (so that a new channel's
    first messages are not lost), and the client's subscription may come first.
    """
    found: list[tuple[int, str, str]] = []
    while len(found) < count:
        [event] = await client.events(1)
        if event["event"] != "storefront.started":
            found.append((event["data"]["order_id"], event["data"]["status"], event["event"]))
    return sorted(found)


# -- The storefront's own unit tests: what a Flask project would keep in tests/ ----------------


@pytest.fixture
def app(
    tmp_path: Path, fake_realtime: FakeRealtime, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Flask]:
    """The storefront on a fresh database, broadcasting into ``fake_realtime``."""
    monkeypatch.syspath_prepend(str(STOREFRONT))
    storefront = importlib.import_module("storefront")
    db = importlib.import_module("storefront.db")
    app: Flask = storefront.create_app(
        {"TESTING": True, "DATABASE": str(tmp_path / "test.sqlite3")}, realtime=fake_realtime
    )
    with app.app_context():
        db.init_db()
    yield app


def logged_in(app: Flask, username: str) -> FlaskClient:
    """A test client whose session is ``username``'s (the demo data: ann 1, bob 2)."""
    client = app.test_client()
    with client.session_transaction() as session:
        session["user_id"] = {"ann": 1, "bob": 2}[username]
    return client


def test_a_status_change_tells_the_customer_and_the_staff(
    app: Flask, fake_realtime: FakeRealtime
) -> None:
    answer = logged_in(app, "bob").post("/orders/1/status", json={"status": "shipped"})
    assert answer.status_code == 200, answer.text
    assert answer.json is not None and answer.json["notified"] is True
    fake_realtime.assert_broadcast(
        "user.1",
        "order.updated",
        {"order_id": 1, "customer_id": 1, "item": "Espresso machine", "status": "shipped"},
    )
    fake_realtime.assert_broadcast(
        "admin.orders",
        "order.status_changed",
        {"order_id": 1, "customer_id": 1, "status": "shipped"},
    )


def test_a_failed_broadcast_keeps_the_change_and_says_so(
    app: Flask, fake_realtime: FakeRealtime
) -> None:
    fake_realtime.fail_with(BrokerUnavailable(["127.0.0.1:9092"], "down for the test"))
    client = logged_in(app, "bob")
    answer = client.post("/orders/1/status", json={"status": "shipped"})
    assert answer.status_code == 200, answer.text
    assert answer.json is not None and answer.json["notified"] is False
    orders = client.get("/orders").json
    assert orders is not None and orders["orders"][0]["status"] == "shipped"


def test_refusals_name_what_was_wrong(app: Flask, fake_realtime: FakeRealtime) -> None:
    bob = logged_in(app, "bob")
    answer = bob.post("/orders/1/status", json={"status": "lost"})
    assert answer.status_code == 400 and "'lost'" in answer.text
    assert bob.post("/orders/99/status", json={"status": "shipped"}).status_code == 404
    ann = logged_in(app, "ann")
    assert ann.post("/orders/1/status", json={"status": "shipped"}).status_code == 403
    anonymous = app.test_client()
    assert anonymous.post("/orders/1/status", json={"status": "shipped"}).status_code == 401
    answer = anonymous.post("/login", json={"username": "ann"})
    assert answer.status_code == 400 and "password" in answer.text
    answer = anonymous.post("/login", json={"username": "ann", "password": "guess"})
    assert answer.status_code == 401 and answer.json == {"error": "wrong username or password"}
    fake_realtime.assert_nothing_broadcast()
