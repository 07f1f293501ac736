"""What the shop tells browsers. Called from ``transaction.on_commit``, never before: a browser
must not hear of an order shipped by a transaction that was then rolled back.

``realtime()`` is the process-wide port, built from the environment on first use; tests replace
it with a ``FakeRealtime`` (see ``orders/tests.py``).
"""

from __future__ import annotations

from tidings import realtime

from .models import Order


def order_shipped(order: Order) -> None:
    """The customer hears on their own channel, the staff on ``admin.orders``."""
    port = realtime()
    port.to_user(order.customer_id, "order.updated", order.as_json())
    port.broadcast(
        "admin.orders",
        "order.status_changed",
        {"order_id": order.pk, "customer_id": order.customer_id, "status": order.status},
    )
