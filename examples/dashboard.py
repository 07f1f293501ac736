"""Live dashboard metrics, pushed as they change."""

from __future__ import annotations

from tidings.ports import RealtimePort


class MetricsPublisher:
    def __init__(self, realtime: RealtimePort) -> None:
        self.realtime = realtime

    def publish(self, orders: int, revenue: float, active_users: int) -> None:
        self.realtime.broadcast(
            "dashboard.metrics",
            "metrics.updated",
            {"orders": orders, "revenue": revenue, "active_users": active_users},
        )


def demo(realtime: RealtimePort) -> None:
    publisher = MetricsPublisher(realtime)
    for tick in range(3):
        publisher.publish(orders=120 + tick, revenue=2820.0 + 23.5 * tick, active_users=51 - tick)
