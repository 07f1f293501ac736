"""Order updates: the customer hears on their own channel, the admins on theirs."""

from __future__ import annotations

from tidings.ports import RealtimePort


class OrderService:
    def __init__(self, realtime: RealtimePort) -> None:
        self.realtime = realtime

    def update_status(self, order_id: int, customer_id: int, status: str, tracking: str) -> None:
        self.realtime.to_user(
            customer_id,
            "order.updated",
            {"order_id": order_id, "status": status, "tracking": tracking},
        )
        self.realtime.broadcast(
            "admin.orders", "order.status_changed", {"order_id": order_id, "status": status}
        )


def demo(realtime: RealtimePort) -> None:
    OrderService(realtime).update_status(1001, 42, "shipped", "1Z999AA10123456784")
