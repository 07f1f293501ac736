"""A Celery worker that tells a customer, live, when their order has shipped.

    celery -A tasks worker --pool prefork --concurrency 2

The web app enqueues ``ship_order.delay(order_id, customer_id)`` (or, without importing this
module, ``app.send_task("shop.ship_order", ...)``); a worker process runs it and broadcasts with
the module-level helper ``tidings.broadcast``, the way a task calls any library. The prefork pool
forks its children from a parent that may have published already (``announce_worker`` below
does, at start): tidings' publishers survive the fork, nothing to set up per child.

The broker is ``CELERY_BROKER_URL``: Redis or RabbitMQ in production; by default kombu's
filesystem transport in ``CELERY_FILESYSTEM_DIR`` (``.celery-broker``), which needs no server
and is what the tests use. tidings' own settings come from the environment as in any process:
``REALTIME_BROKER=kafka`` + ``KAFKA_*``, or ``REALTIME_BROKER=gateway`` +
``REALTIME_GATEWAY_URL`` + ``REALTIME_API_KEY``.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from celery import Celery, Task
from celery.signals import worker_init

from tidings import BrokerOverloaded, BrokerUnavailable, broadcast, broadcast_nowait

log = logging.getLogger(__name__)

app = Celery("shop", broker=os.environ.get("CELERY_BROKER_URL", "filesystem://"))
app.conf.update(
    task_acks_late=True,  # a worker that dies mid-task leaves the task to another
    worker_prefetch_multiplier=1,  # a process reserves one task at a time: none wait behind another
    broker_connection_retry_on_startup=True,
)
if app.conf.broker_url.startswith("filesystem://"):
    # One folder serves as the queue for both the web app and the workers.
    folder = Path(os.environ.get("CELERY_FILESYSTEM_DIR", ".celery-broker")).resolve()
    for sub in ("queue", "processed", "control"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    app.conf.broker_transport_options = {
        "data_folder_in": str(folder / "queue"),
        "data_folder_out": str(folder / "queue"),
        "processed_folder": str(folder / "processed"),
        "control_folder": str(folder / "control"),
        "polling_interval": 0.1,  # seconds between looks at the folder (kombu's default: 1)
    }


@app.task(bind=True, name="shop.ship_order", max_retries=5)
def ship_order(self: Task, order_id: int, customer_id: int) -> None:
    """Tell the customer and the staff feed that ``order_id`` shipped.

    A broker that cannot take the message (Kafka down, the gateway unreachable) raises
    ``BrokerUnavailable`` within ``KAFKA_TIMEOUT`` / ``REALTIME_GATEWAY_TIMEOUT``, a full
    buffer on the way ``BrokerOverloaded``: the task is retried later, with backoff, rather
    than lost. A retry may send a message again (each with a new id): at least once, so a
    page should treat a second ``order.updated`` for one order as a repeat.
    """
    # worker_pid: which process of the pool ran the task (the demo shows it, the test checks
    # that both children published).
    shipped = {"order_id": order_id, "status": "shipped", "worker_pid": os.getpid()}
    try:
        # Both handed over at once, then both waited for: one round trip, not two.
        pending = [
            broadcast_nowait(f"user.{customer_id}", "order.updated", shipped),
            broadcast_nowait("admin.orders", "order.status_changed", shipped),
        ]
        for each in pending:
            each.result()
    except (BrokerUnavailable, BrokerOverloaded) as exc:
        raise self.retry(exc=exc, countdown=2**self.request.retries) from exc


@worker_init.connect
def announce_worker(**_: Any) -> None:
    """The worker's parent says it is up on ``admin.workers``, before it forks its pool: the
    children then start with a publisher their parent has used."""
    try:
        broadcast("admin.workers", "worker.up", {"pid": os.getpid()})
    except BrokerUnavailable as exc:  # a worker must start even when live updates cannot
        log.warning("worker.up not broadcast: %s", exc)
