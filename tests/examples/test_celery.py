"""examples/celery: a real ``celery worker --pool prefork --concurrency 2`` runs the shop's task,
whose broadcasts reach a WebSocket client of a real gateway (memory broker through the gateway
publisher, and Kafka); then the task's own unit tests with ``fake_realtime``.

The worker's parent publishes before it forks (``worker_init``), so each child starts with a
publisher its parent has used: the case fork safety must handle (issue 13, part 3).
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import os
import signal
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import trio
from celery.exceptions import Retry
from celery.signals import task_retry

from tidings import BrokerUnavailable
from tidings.testing import FakeRealtime

from ..support.processes import TIDINGS, Gateway
from ..support.wsclient import connect
from .conftest import BIN, EXAMPLES, AppProcess

EXAMPLE = EXAMPLES / "celery"
ROUND = 4
"""Tasks enqueued at once: two for each child of the pool if it spreads them evenly."""
ROUNDS = 5


def load_tasks(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """A fresh copy of examples/celery/tasks.py, configured by ``env`` as the web app's would be:
    what enqueues the tasks the way the app does, ``ship_order.delay(...)``."""
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    spec = importlib.util.spec_from_file_location("celery_example_tasks", EXAMPLE / "tasks.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def token_for(user_id: int, env: dict[str, str]) -> str:
    """A connection token from ``tidings token``, signed as the web app signs its own."""
    done = subprocess.run(
        [TIDINGS, "token", str(user_id)], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


async def test_prefork_children_broadcast_every_task_to_the_customer(
    live_gateway: Gateway,
    app_env: dict[str, str],
    start_app: Any,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    queue = {"CELERY_FILESYSTEM_DIR": str(tmp_path / "celery")}
    env = {**app_env, **queue}
    token = await trio.to_thread.run_sync(token_for, 42, env)

    async with connect(live_gateway.ws_url, token) as alice, connect(live_gateway.ws_url) as desk:
        await alice.subscribe("user.42")
        await desk.subscribe("admin.workers")
        await desk.subscribe("admin.orders")
        worker: AppProcess = start_app(
            [
                str(BIN / "celery"),
                "-A",
                "tasks",
                "worker",
                "--pool",
                "prefork",
                "--concurrency",
                "2",
                "--loglevel",
                "info",
                "--hostname",
                "shop@%h",
            ],
            env,
            EXAMPLE,
        )
        # The parent's own broadcast, before it forks the pool.
        up = await desk.expect(timeout=60, type="event", event="worker.up")
        parent = up["data"]["pid"]
        assert parent == worker.process.pid

        # Tasks in rounds until both children of the pool have run some: which child takes a
        # task is the pool's choice, so the test keeps going (a bounded number of rounds)
        # rather than assume an even spread.
        tasks = load_tasks(queue, monkeypatch)
        order_ids = itertools.count(2001)
        shipped: list[int] = []
        pids: set[int] = set()
        for _ in range(ROUNDS):
            batch = [next(order_ids) for _ in range(ROUND)]
            for order in batch:
                await trio.to_thread.run_sync(tasks.ship_order.delay, order, 42)
            try:
                events = await alice.events(len(batch), timeout=60)
            except trio.TooSlowError:
                raise AssertionError(f"not every task was heard:\n{worker.output()}") from None
            assert {event["event"] for event in events} == {"order.updated"}
            assert sorted(event["data"]["order_id"] for event in events) == batch
            assert all(event["data"]["status"] == "shipped" for event in events)
            shipped += batch
            pids |= {event["data"]["worker_pid"] for event in events}
            if len(pids) == 2:
                break
        assert parent not in pids, "the tasks ran in the pool's children, not in the parent"
        assert len(pids) == 2, f"both children published: {pids}\n{worker.output()}"

        feed = await desk.events(len(shipped))
        assert {event["channel"] for event in feed} == {"admin.orders"}
        assert sorted(event["data"]["order_id"] for event in feed) == shipped
        await alice.nothing_more()

    # Stopped as Celery asks: SIGTERM to the main process alone, which stops its pool. (A signal
    # to every process of the group can kill an idle child holding the pool's queue lock, and
    # the parent then waits for that lock at exit.)
    worker.process.send_signal(signal.SIGTERM)
    code = await trio.to_thread.run_sync(functools.partial(worker.process.wait, 30))
    assert code == 0, worker.output()


# -- The task's own tests: no worker, no broker ------------------------------------------------


@pytest.fixture
def tasks(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """The tasks module on kombu's in-memory transport; ``apply()`` runs a task in the test."""
    return load_tasks({"CELERY_BROKER_URL": "memory://"}, monkeypatch)


def test_shipping_tells_the_customer_and_the_staff_feed(
    tasks: ModuleType, fake_realtime: FakeRealtime
) -> None:
    result = tasks.ship_order.apply(args=(1001, 42))

    assert result.successful(), result.traceback
    shipped = {"order_id": 1001, "status": "shipped", "worker_pid": os.getpid()}  # apply(): here
    fake_realtime.assert_broadcast("user.42", "order.updated", shipped)
    fake_realtime.assert_broadcast("admin.orders", "order.status_changed", shipped)


def test_the_task_retries_while_the_broker_is_unavailable(
    tasks: ModuleType, fake_realtime: FakeRealtime
) -> None:
    fake_realtime.fail_with(BrokerUnavailable(["127.0.0.1:9092"], "timed out"))
    retries: list[Retry] = []

    @task_retry.connect
    def broker_back(reason: Retry, **_: Any) -> None:  # Celery retries: Kafka is back
        retries.append(reason)
        fake_realtime.fail_with(None)

    try:
        result = tasks.ship_order.apply(args=(1001, 42))
    finally:
        task_retry.disconnect(broker_back)

    assert result.successful(), result.traceback
    assert len(retries) == 1 and isinstance(retries[0].exc, BrokerUnavailable)
    assert len(fake_realtime.on("user.42")) == 1


def test_the_task_fails_once_its_retries_are_spent(
    tasks: ModuleType, fake_realtime: FakeRealtime
) -> None:
    fake_realtime.fail_with(BrokerUnavailable(["127.0.0.1:9092"], "timed out"))

    result = tasks.ship_order.apply(args=(1001, 42))

    assert result.failed()
    assert isinstance(result.result, BrokerUnavailable)
    fake_realtime.assert_nothing_broadcast()
